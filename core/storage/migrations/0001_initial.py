from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from core.types import ConversationState, DeliveryStatus, Direction, Owner
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Contact',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('address', fields.CharField(unique=True, max_length=255)),
                ('name', fields.CharField(null=True, max_length=255)),
                ('wa_id', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'hookline_contact', 'app': 'hookline', 'pk_attr': 'id', 'table_description': 'A customer, by channel address (an E.164 phone, or an opaque id such as …@lid).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Job',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=64)),
                ('payload', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('ordering_key', fields.CharField(null=True, db_index=True, max_length=128)),
                ('state', fields.CharField(default='ready', db_index=True, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('run_at_ms', fields.BigIntField(db_index=True)),
                ('locked_until_ms', fields.BigIntField(null=True)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'hookline_job', 'app': 'hookline', 'pk_attr': 'id', 'table_description': 'A unit of work on the embedded queue. Rows are deleted when done, dead ones are kept.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NumberRow',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('provider', fields.CharField(db_index=True, max_length=64)),
                ('phone', fields.CharField(max_length=64)),
                ('display_name', fields.CharField(null=True, max_length=255)),
                ('public_settings', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('managed_by_config', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'hookline_number', 'app': 'hookline', 'pk_attr': 'id', 'table_description': 'A WhatsApp number. Rows declared in the config file are managed_by_config.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Conversation',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('number', fields.ForeignKeyField('hookline.NumberRow', source_field='number_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.RESTRICT)),
                ('contact', fields.ForeignKeyField('hookline.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.RESTRICT)),
                ('owner', fields.CharEnumField(default=Owner.HUMAN, description='HUMAN: human\nBOT: bot', enum_type=Owner, max_length=16)),
                ('state', fields.CharEnumField(default=ConversationState.OPEN, description='OPEN: open\nCLOSED: closed', enum_type=ConversationState, max_length=16)),
                ('last_message_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'hookline_conversation', 'app': 'hookline', 'unique_together': (('number', 'contact'),), 'pk_attr': 'id', 'table_description': 'The thread between one of our numbers and one contact, reopened when the contact writes.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Message',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('hookline.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.RESTRICT)),
                ('direction', fields.CharEnumField(description='INBOUND: in\nOUTBOUND: out', enum_type=Direction, max_length=8)),
                ('kind', fields.CharField(default='text', max_length=32)),
                ('text', fields.TextField(null=True, unique=False)),
                ('media', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('data', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('provider', fields.CharField(max_length=64)),
                ('external_id', fields.CharField(null=True, max_length=255)),
                ('reply_to', fields.CharField(null=True, max_length=255)),
                ('status', fields.CharEnumField(description='RECEIVED: received\nPENDING: pending\nQUEUED: queued\nSENT: sent\nFAILED: failed\nDELIVERED: delivered\nREAD: read\nPLAYED: played', enum_type=DeliveryStatus, max_length=16)),
                ('error_code', fields.CharField(null=True, max_length=64)),
                ('error_text', fields.TextField(null=True, unique=False)),
                ('payload', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('status_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'hookline_message', 'app': 'hookline', 'unique_together': (('provider', 'external_id'),), 'pk_attr': 'id', 'table_description': 'One message in or out. (provider, external_id) is unique: a redelivery is the same row.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StatusEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('message', fields.ForeignKeyField('hookline.Message', source_field='message_id', null=True, db_constraint=True, to_field='id', related_name='status_events', on_delete=OnDelete.CASCADE)),
                ('provider', fields.CharField(max_length=64)),
                ('external_id', fields.CharField(null=True, db_index=True, max_length=255)),
                ('raw_status', fields.CharField(max_length=64)),
                ('status', fields.CharEnumField(null=True, description='RECEIVED: received\nPENDING: pending\nQUEUED: queued\nSENT: sent\nFAILED: failed\nDELIVERED: delivered\nREAD: read\nPLAYED: played', enum_type=DeliveryStatus, max_length=16)),
                ('error_code', fields.CharField(null=True, max_length=64)),
                ('error_text', fields.TextField(null=True, unique=False)),
                ('applied', fields.BooleanField(default=False)),
                ('occurred_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('payload', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'hookline_status_event', 'app': 'hookline', 'pk_attr': 'id', 'table_description': 'Every status webhook as received, kept for audit even when it moved nothing.'},
            bases=['Model'],
        ),
    ]
