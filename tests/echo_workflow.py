"""A workflow for tests with real server processes (loaded by import path): it answers every
inbound message with `echo <text>`, once per message however often its job runs, and — when
`ECHO_WORKFLOW_LOG` names a file — appends `conversation message pid` to it, so a test
can see which process ran which message, in what order."""

from __future__ import annotations

import os

from core import hookimpl

PLUGIN_NAME = "echo"
LOG_ENV_VAR = "ECHO_WORKFLOW_LOG"


@hookimpl
async def on_inbound_message(host, message, conversation) -> None:  # type: ignore[no-untyped-def]
    path = os.environ.get(LOG_ENV_VAR)
    if path:
        with open(path, "a", encoding="utf-8") as log:  # one short append: atomic between processes
            log.write(f"{conversation.id} {message.id} {os.getpid()}\n")
    await host.send_text(conversation, f"echo {message.text}", dedupe_key=f"echo:{message.id}")
