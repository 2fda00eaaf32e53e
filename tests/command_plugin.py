"""A plugin that contributes a CLI command (loaded by import path in tests)."""

from __future__ import annotations

import argparse

from core import Command, hookimpl

PLUGIN_NAME = "cmdtest"


async def _count_numbers(host, args: argparse.Namespace) -> int:
    from core.storage.models import NumberRow

    print(f"{args.greeting}: {await NumberRow.all().count()} number(s)")
    return 3


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--greeting", default="hello")


@hookimpl
def register_commands() -> list[Command]:
    return [Command("count-numbers", "count the stored numbers", _count_numbers, _configure)]
