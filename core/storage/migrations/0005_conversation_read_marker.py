from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('hookline', '0004_users_sessions_events')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Conversation',
            name='last_read_message_id',
            field=fields.BigIntField(default=0),
        ),
    ]
