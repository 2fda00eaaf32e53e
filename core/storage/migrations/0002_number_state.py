from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('hookline', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='NumberRow',
            name='sealed_secrets',
            field=fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='NumberRow',
            name='state',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name='NumberRow',
            name='state_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='NumberRow',
            name='state_detail',
            field=fields.TextField(null=True, unique=False),
        ),
    ]
