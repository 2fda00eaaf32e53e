"""Live events on PostgreSQL: the transaction id of every event row, and a notification per
storing transaction (see core/event_log.py and core/event_listener.py).

Hand-written: the column is filled by the database (`pg_current_xact_id()`), never by the ORM,
so it is deliberately not a field of the `Event` model, and the trigger is PostgreSQL-only.
SQLite needs neither (one writer at a time: ids are already in commit order), so this migration
changes nothing there.
"""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

#: Kept in step with core/event_listener.py's CHANNEL.
CHANNEL = "hookline_events"

FORWARD = f"""
ALTER TABLE hookline_event ADD COLUMN txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX hookline_event_cursor ON hookline_event (txid, id);
CREATE FUNCTION hookline_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER hookline_event_notify AFTER INSERT ON hookline_event
    FOR EACH STATEMENT EXECUTE FUNCTION hookline_event_notify();
"""

BACKWARD = """
DROP TRIGGER hookline_event_notify ON hookline_event;
DROP FUNCTION hookline_event_notify();
DROP INDEX hookline_event_cursor;
ALTER TABLE hookline_event DROP COLUMN txid;
"""


async def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor._run_sql(FORWARD)


async def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor._run_sql(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [('hookline', '0006_rate_limits')]

    initial = False

    operations = [
        ops.RunPython(forward, backward),
    ]
