"""The tables. Schema changes: edit here, then `make migrations` (Tortoise's own migrations).

Model docstrings become SQL table comments: no backticks, quotes or semicolons in them (the SQLite DDL breaks).
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from core.types import ConversationState, DeliveryStatus, Direction, Owner


class NumberRow(Model):
    """A WhatsApp number. Rows declared in the config file are managed_by_config.

    Only non-secret settings are stored here, secrets stay in the configuration (or, for numbers
    created over the API, encrypted).
    """

    id = fields.CharField(primary_key=True, max_length=64)
    provider = fields.CharField(max_length=64, db_index=True)
    phone = fields.CharField(max_length=64)
    display_name = fields.CharField(max_length=255, null=True)
    public_settings = fields.JSONField(default=dict)
    managed_by_config = fields.BooleanField(default=False)
    # Provider-reported connection state (WPPConnect pairing, a Meta token that needs renewing).
    state = fields.CharField(max_length=32, null=True)
    state_detail = fields.TextField(null=True)
    state_at = fields.DatetimeField(null=True)
    # Values a provider generates and keeps per number, encrypted with the secret key (core.vault).
    sealed_secrets = fields.JSONField(default=dict)
    # Secret settings of a number created over the API, each encrypted with the secret key.
    sealed_settings = fields.JSONField(default=dict)
    # The number's own rate limits (core/limits.py); a limit left out is its provider's default.
    rate_limits = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "hookline_number"


class Contact(Model):
    """A customer, by channel address (an E.164 phone, or an opaque id such as …@lid)."""

    id = fields.BigIntField(primary_key=True)
    address = fields.CharField(max_length=255, unique=True)
    name = fields.CharField(max_length=255, null=True)
    wa_id = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "hookline_contact"


class Conversation(Model):
    """The thread between one of our numbers and one contact, reopened when the contact writes."""

    id = fields.BigIntField(primary_key=True)
    number: fields.ForeignKeyRelation[NumberRow] = fields.ForeignKeyField(
        "hookline.NumberRow", related_name="conversations", on_delete=fields.RESTRICT
    )
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "hookline.Contact", related_name="conversations", on_delete=fields.RESTRICT
    )
    owner = fields.CharEnumField(Owner, default=Owner.HUMAN, max_length=16)
    state = fields.CharEnumField(ConversationState, default=ConversationState.OPEN, max_length=16)
    last_message_at = fields.DatetimeField(null=True)
    # The newest message an agent has seen in the console: inbound messages after it are unread.
    last_read_message_id = fields.BigIntField(default=0)
    # Per-plugin state that must survive restarts (a bot flow's step), keyed by plugin name.
    plugin_state = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    number_id: str
    contact_id: int

    class Meta:
        table = "hookline_conversation"
        unique_together = (("number", "contact"),)


class Message(Model):
    """One message in or out. (provider, external_id) is unique: a redelivery is the same row."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "hookline.Conversation", related_name="messages", on_delete=fields.RESTRICT
    )
    direction = fields.CharEnumField(Direction, max_length=8)
    kind = fields.CharField(max_length=32, default="text")
    text = fields.TextField(null=True)
    media = fields.JSONField(default=list)
    data = fields.JSONField(default=dict)
    provider = fields.CharField(max_length=64)
    external_id = fields.CharField(max_length=255, null=True)
    # Who queued an outbound message: "bot" messages are dropped if a human owns the conversation
    # by the time they would go out.
    sender = fields.CharField(max_length=16, null=True)
    # An outbound message queued twice under one key is stored (and sent) once.
    dedupe_key = fields.CharField(max_length=255, null=True)
    reply_to = fields.CharField(max_length=255, null=True)
    status = fields.CharEnumField(DeliveryStatus, max_length=16)
    error_code = fields.CharField(max_length=64, null=True)
    error_text = fields.TextField(null=True)
    payload = fields.JSONField(null=True)  # the provider payload as received
    sent_at = fields.DatetimeField(null=True)  # the provider's timestamp for inbound messages
    status_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    conversation_id: int

    class Meta:
        table = "hookline_message"
        unique_together = (("provider", "external_id"), ("conversation", "dedupe_key"))


class StatusEvent(Model):
    """Every status webhook as received, kept for audit even when it moved nothing."""

    id = fields.BigIntField(primary_key=True)
    message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "hookline.Message", related_name="status_events", null=True, on_delete=fields.CASCADE
    )
    provider = fields.CharField(max_length=64)
    external_id = fields.CharField(max_length=255, null=True, db_index=True)
    raw_status = fields.CharField(max_length=64)
    status = fields.CharEnumField(DeliveryStatus, max_length=16, null=True)
    error_code = fields.CharField(max_length=64, null=True)
    error_text = fields.TextField(null=True)
    applied = fields.BooleanField(default=False)
    occurred_at = fields.DatetimeField(null=True)
    received_at = fields.DatetimeField(auto_now_add=True)
    payload = fields.JSONField(null=True)  # the provider payload as received

    message_id: int | None

    class Meta:
        table = "hookline_status_event"


class Job(Model):
    """A unit of work on the queue (either one). Rows are deleted when done, dead ones are kept."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=64)
    payload = fields.JSONField(default=dict)
    ordering_key = fields.CharField(max_length=128, null=True, db_index=True)
    # Unique among jobs still to run (a partial index, migration 0008): enqueueing it twice runs it once.
    dedupe_key = fields.CharField(max_length=128, null=True)
    state = fields.CharField(max_length=16, default="ready", db_index=True)  # ready, running, dead
    # SQLite's embedded queue: behind a live job of its key, so not a lane head (core/queue.py).
    blocked = fields.BooleanField(default=False)
    attempts = fields.IntField(default=0)
    # Epoch milliseconds: compared in SQL on every claim, identically on SQLite and PostgreSQL.
    run_at_ms = fields.BigIntField(db_index=True)
    locked_until_ms = fields.BigIntField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hookline_job"


class Lane(Model):
    """A lane of scale mode's queue (core/pgqueue.py) that has work or a worker draining it."""

    lane = fields.CharField(primary_key=True, max_length=160)
    touched_at = fields.DatetimeField()

    class Meta:
        table = "hookline_lane"


class User(Model):
    """A person who signs in to the API or the console, as admin or agent."""

    id = fields.BigIntField(primary_key=True)
    username = fields.CharField(max_length=150, unique=True)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharField(max_length=16)  # admin or agent
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hookline_user"


class ApiToken(Model):
    """A bearer token for the REST API, kept only as its SHA-256 digest."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "hookline.User", related_name="tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)

    user_id: int

    class Meta:
        table = "hookline_api_token"


class UserSession(Model):
    """A console sign-in, kept as the SHA-256 digest of its cookie, with its CSRF token."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "hookline.User", related_name="sessions", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    csrf_token = fields.CharField(max_length=64)
    expires_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)

    user_id: int

    class Meta:
        table = "hookline_user_session"


class Event(Model):
    """A live event for browsers, in id order, replayed to SSE clients that resume."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=32)
    data = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hookline_event"


class RateLimitRow(Model):
    """The GCRA state of one rate limit key, a number or a number and a recipient, shared by every process.

    Times are microseconds on the database clock (core/ratelimit.py). A row whose tat_us has passed
    means the same as no row.
    """

    name = fields.CharField(primary_key=True, max_length=400)
    tat_us = fields.BigIntField()  # theoretical arrival time: when the key would be idle again
    asked_us = fields.BigIntField()  # when it was last asked
    wait_us = fields.BigIntField()  # the wait that answer carried

    class Meta:
        table = "hookline_rate_limit"
