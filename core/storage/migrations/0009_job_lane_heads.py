"""The embedded queue's lane heads on SQLite (core/queue.py): a job behind a live job of its key
is `blocked`, and a partial index holds only the jobs a claim may take. Jobs already waiting are
marked as the queue would have marked them."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('hookline', '0008_queue_lanes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Job',
            name='blocked',
            field=fields.BooleanField(default=False),
        ),
        ops.RunSQL(
            "UPDATE hookline_job SET blocked = true WHERE ordering_key IS NOT NULL AND state IN ('ready', 'running')"
            " AND EXISTS (SELECT 1 FROM hookline_job e WHERE e.ordering_key = hookline_job.ordering_key"
            " AND e.id < hookline_job.id AND e.state IN ('ready', 'running'))",
            reverse_sql="UPDATE hookline_job SET blocked = false",
        ),
        ops.RunSQL(
            "CREATE INDEX hookline_job_lane_heads ON hookline_job (id)"
            " WHERE blocked = false AND state IN ('ready', 'running')",
            reverse_sql="DROP INDEX hookline_job_lane_heads",
        ),
    ]
