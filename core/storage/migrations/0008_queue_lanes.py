from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('hookline', '0007_event_cursor')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Lane',
            fields=[
                ('lane', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=160)),
                ('touched_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'hookline_lane', 'app': 'hookline', 'pk_attr': 'lane', 'table_description': "A lane of scale mode's queue (core/pgqueue.py) that has work or a worker draining it."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Job',
            name='dedupe_key',
            field=fields.CharField(null=True, max_length=128),
        ),
        # Partial: a key is unique among jobs still to run, and free again once its job is done or dead.
        ops.RunSQL(
            "CREATE UNIQUE INDEX hookline_job_live_dedupe_key ON hookline_job (dedupe_key)"
            " WHERE dedupe_key IS NOT NULL AND state IN ('ready', 'running')",
            reverse_sql="DROP INDEX hookline_job_live_dedupe_key",
        ),
    ]
