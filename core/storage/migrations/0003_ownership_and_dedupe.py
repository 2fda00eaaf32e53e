from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.migrations.constraints import UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('hookline', '0002_number_state')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Conversation',
            name='plugin_state',
            field=fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='Message',
            name='dedupe_key',
            field=fields.CharField(null=True, max_length=255),
        ),
        ops.AddField(
            model_name='Message',
            name='sender',
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.AddConstraint(
            model_name='Message',
            constraint=UniqueConstraint(fields=('conversation', 'dedupe_key'), name=None),
        ),
    ]
