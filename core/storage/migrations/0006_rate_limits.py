from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('hookline', '0005_conversation_read_marker')]

    initial = False

    operations = [
        ops.AddField(
            model_name='NumberRow',
            name='rate_limits',
            field=fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.CreateModel(
            name='RateLimitRow',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=400)),
                ('tat_us', fields.BigIntField()),
                ('asked_us', fields.BigIntField()),
                ('wait_us', fields.BigIntField()),
            ],
            options={'table': 'hookline_rate_limit', 'app': 'hookline', 'pk_attr': 'name', 'table_description': 'The GCRA state of one rate limit key, a number or a number and a recipient, shared by every process.'},
            bases=['Model'],
        ),
    ]
