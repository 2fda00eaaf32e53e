"""``hookline wppconnect status|qr|start|close|logout [--number ID] [--out FILE]``.

Run with storage open (core.cli): each action talks to the number's WPPConnect Server and stores
what it learns as the number's state, as the server does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.types import Command, Number, ProviderError
from plugins.wppconnect.session import PROVIDER, Sessions

ACTIONS = ("status", "qr", "start", "close", "logout")


def command() -> Command:
    return Command(
        "wppconnect",
        "WPPConnect sessions: status, qr (the pairing QR code as PNG), start, close, logout",
        run,
        configure,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="status: read each session's state; qr: write the QR code "
                        "to --out; start: start the session with hookline's webhook; close; logout (unpairs)")
    parser.add_argument("--number", help="one number's id (default: every WPPConnect number; qr: the only one)")
    parser.add_argument("--out", help="qr: the PNG file to write (default: <number id>-qr.png)")


async def run(host: Any, args: argparse.Namespace) -> int:
    numbers = _numbers(host, args.number)
    if numbers is None:
        return 2
    sessions = Sessions(host)
    try:
        if args.action == "qr":
            if len(numbers) != 1:
                print("hookline: qr needs --number (several WPPConnect numbers are configured)", file=sys.stderr)
                return 2
            return await _qr(sessions, numbers[0], Path(args.out or f"{numbers[0].id}-qr.png"))
        failures = 0
        for number in numbers:
            try:
                if args.action == "status":
                    await sessions.status(number)
                elif args.action == "start":
                    await sessions.start(number)
                elif args.action == "close":
                    await sessions.close(number)
                else:
                    await sessions.logout(number)
            except ProviderError as exc:
                failures += 1
                print(f"hookline: {number.id}: {exc.message}", file=sys.stderr)
            state, detail = sessions.book.current.get(number.id, ("-", None))
            print("  ".join(filter(None, [number.id, number.settings.session, state, detail])))
        return 1 if failures else 0
    finally:
        await sessions.close_all()


async def _qr(sessions: Sessions, number: Number, out: Path) -> int:
    try:
        found = await sessions.qr(number)
    except ProviderError as exc:
        print(f"hookline: {number.id}: {exc.message}", file=sys.stderr)
        return 1
    if isinstance(found, str):
        print(f"hookline: {number.id}: no QR code: {found}", file=sys.stderr)
        return 1
    out.write_bytes(found)
    print(f"{number.id}: QR code written to {out}; scan it with WhatsApp on the phone (Linked devices)")
    return 0


def _numbers(host: Any, number_id: str | None) -> list[Number] | None:
    if number_id is None:
        numbers = host.numbers_of(PROVIDER)
        if not numbers:
            print("hookline: no WPPConnect number is configured", file=sys.stderr)
            return None
        return numbers
    number = host.number(number_id)  # unknown id: UnknownNumber, exit 2
    if number.provider != PROVIDER:
        print(f"hookline: number {number_id!r} is a {number.provider} number, not a WPPConnect one", file=sys.stderr)
        return None
    return [number]
