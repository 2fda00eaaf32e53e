"""The `hookline` command."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import sys
from pathlib import Path
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from core.config import CONFIG_ENV_VAR, ConfigError, resolve_config_path
from core.logs import setup_logging
from core.plugins import PluginError
from core.runtime import Runtime, build_runtime
from core.types import Command
from core.storage.database import UnmigratedDatabase
from core.types import UnknownNumber

EXIT_CONFIG = 2
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return args.command(args)
    except (ConfigError, PluginError) as exc:
        print(f"hookline: configuration error\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (UnknownNumber, UnmigratedDatabase) as exc:  # a bad `--number`; `hookline migrate` first
        print(f"hookline: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _runtime(args: argparse.Namespace) -> Runtime:
    runtime = build_runtime(resolve_config_path(args.config))
    setup_logging(runtime.settings.logging.level, args.log_format or runtime.settings.logging.format)
    return runtime


async def _with_storage(runtime: Runtime, work: Callable[[], Awaitable[T]]) -> T:
    """Open storage (migrating SQLite if needed) and mirror configured numbers, then run `work`."""
    from core.numbers import sync_config_numbers
    from core.storage.database import close_storage, open_storage, prepare_schema

    await open_storage(runtime.settings.database.url)
    try:
        await prepare_schema(runtime.settings.database.url)
        await sync_config_numbers(runtime.settings.numbers)
        await runtime.host.api_numbers.refresh()
        return await work()
    finally:
        await close_storage()


# --------------------------------------------------------------------------- commands


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from core.app import LOG_FORMAT_ENV_VAR, NO_QUEUE_ENV_VAR, create_app
    from core.storage.database import UnmigratedDatabase

    runtime = _runtime(args)
    server = runtime.settings.server
    host, port = args.host or server.host, args.port if args.port is not None else server.port
    try:  # migrate (SQLite) or refuse (PostgreSQL) once, before any worker process starts
        asyncio.run(_with_storage(runtime, _nothing))
    except UnmigratedDatabase as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done, which would end
    # a clean stop with "killed by SIGTERM" (143); a stop that drained properly exits 0.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        if args.workers > 1:
            os.environ[CONFIG_ENV_VAR] = str(runtime.settings.path)
            os.environ[LOG_FORMAT_ENV_VAR] = args.log_format or runtime.settings.logging.format
            os.environ[NO_QUEUE_ENV_VAR] = "1" if args.no_queue else "0"
            uvicorn.run("core.app:app_from_environment", factory=True, host=host, port=port,
                        workers=args.workers, log_config=None, access_log=False)
        else:
            uvicorn.run(create_app(runtime, run_workers=not args.no_queue), host=host, port=port, log_config=None,
                        access_log=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def worker(args: argparse.Namespace) -> int:
    """Queue workers without HTTP, until SIGTERM or Ctrl+C; running jobs finish first (or go
    back to the queue when they outlast the stop)."""
    from core.lifecycle import running
    from core.storage.database import UnmigratedDatabase

    runtime = _runtime(args)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with running(runtime, run_workers=True, role="worker"):
            await stop.wait()

    try:
        asyncio.run(run())
    except UnmigratedDatabase as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _stopped(signum: int, frame: Any) -> None:
    """SIGTERM after uvicorn's shutdown: already handled, nothing left to do."""


async def _nothing() -> int:
    return 0


def check_config(args: argparse.Namespace) -> int:
    runtime = build_runtime(resolve_config_path(args.config))
    settings = runtime.settings
    print(
        f"{settings.path}: OK — {len(settings.numbers)} number(s); "
        f"plugins enabled: {', '.join(settings.enabled_plugins) or 'none'}; "
        f"database: {settings.database.url.split('://', 1)[0]}"
    )
    return 0


def migrate(args: argparse.Namespace) -> int:
    from core.storage.database import close_storage, migrate as apply_migrations, open_storage

    runtime = _runtime(args)
    url = runtime.settings.database.url

    async def run() -> int:
        await open_storage(url)
        try:
            applied = await apply_migrations(url)
        finally:
            await close_storage()
        print("applied: " + ", ".join(applied) if applied else "the database is up to date")
        return 0

    return asyncio.run(run())


def plugins(args: argparse.Namespace) -> int:
    from core.plugins import discover

    path = resolve_config_path(args.config)
    if path.exists():
        runtime = build_runtime(path)
        available, enabled = runtime.available, runtime.settings.enabled_plugins
    else:  # listing what is installed needs no config
        print(f"hookline: {path} not found; showing installed plugins, none enabled", file=sys.stderr)
        available, enabled = discover(), ()
    rows = [
        {
            "name": info.name,
            "version": info.version or "-",
            "enabled": info.name in enabled,
            "role": info.role,
            "source": info.source,
            "hooks": info.hooks,
        }
        for info in sorted(available.values(), key=lambda info: info.name)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _table(
        ["name", "version", "enabled", "role", "hooks"],
        [[r["name"], r["version"], "yes" if r["enabled"] else "no", r["role"], ", ".join(r["hooks"])] for r in rows],
    )
    return 0


def send(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    host = runtime.host
    host.number(args.number)  # unknown id: a clear error before touching storage (configured numbers only)

    async def work() -> int:
        conversation = await host.conversation_with(args.number, args.to)
        message = await host.send_text(conversation, args.text)
        print(message.id)
        return 0

    return asyncio.run(_with_storage(runtime, work))


def messages(args: argparse.Namespace) -> int:
    from core.storage.models import Message

    runtime = _runtime(args)

    async def work() -> int:
        query = Message.all().order_by("id").prefetch_related("conversation")
        if args.conversation is not None:
            query = query.filter(conversation_id=args.conversation)
        rows = [
            {
                "id": m.id,
                "conversation": m.conversation_id,
                "number": m.conversation.number_id,
                "direction": m.direction.value,
                "status": m.status.value,
                "provider": m.provider,
                "external_id": m.external_id,
                "text": m.text,
                "error_code": m.error_code,
                "error_text": m.error_text,
                "created_at": m.created_at.isoformat(),
            }
            for m in await query.limit(args.limit)
        ]
        if args.json:
            print(json.dumps(rows, indent=2, ensure_ascii=False))
        else:
            _table(
                ["id", "conv", "dir", "status", "provider", "text", "error"],
                [[r["id"], r["conversation"], r["direction"], r["status"], r["provider"],
                  _clip(r["text"]), _clip(" ".join(filter(None, [r["error_code"], r["error_text"]])))] for r in rows],
            )
        return 0

    return asyncio.run(_with_storage(runtime, work))


def status(args: argparse.Namespace) -> int:
    """Ask the provider for a message's current status (the original system's getMessageStatus)."""
    from core.types import ProviderError

    runtime = _runtime(args)

    async def work() -> int:
        try:
            message = await runtime.host.refresh_status(args.message_id)
        except ProviderError as exc:
            print(f"hookline: {exc.message}", file=sys.stderr)
            return 1
        print(json.dumps({"id": message.id, "status": message.status.value, "external_id": message.external_id,
                          "error_code": message.error_code, "error_text": message.error_text}, ensure_ascii=False))
        return 0

    return asyncio.run(_with_storage(runtime, work))


def transfer(args: argparse.Namespace) -> int:
    runtime = _runtime(args)

    async def work() -> int:
        try:
            changed = await runtime.host.transfer(args.conversation_id, args.to, reason=args.reason, by=args.by)
        except LookupError as exc:
            print(f"hookline: {exc}", file=sys.stderr)
            return 1
        print(f"conversation {args.conversation_id} {'transferred to' if changed else 'already owned by'} {args.to}")
        return 0

    return asyncio.run(_with_storage(runtime, work))


def numbers(args: argparse.Namespace) -> int:
    from core.storage.models import NumberRow

    runtime = _runtime(args)

    async def work() -> int:
        rows = [
            {
                "id": row.id, "provider": row.provider, "phone": row.phone, "display_name": row.display_name,
                "managed_by_config": row.managed_by_config, "state": row.state, "state_detail": row.state_detail,
                "state_at": row.state_at.isoformat() if row.state_at else None,
            }
            for row in await NumberRow.all().order_by("id")
        ]
        if args.json:
            print(json.dumps(rows, indent=2, ensure_ascii=False))
        else:
            _table(["id", "provider", "phone", "config", "state"],
                   [[r["id"], r["provider"], r["phone"], "yes" if r["managed_by_config"] else "no",
                     " ".join(filter(None, [r["state"], r["state_detail"]])) or "-"] for r in rows])
        return 0

    return asyncio.run(_with_storage(runtime, work))


def users(args: argparse.Namespace) -> int:
    """`users create USERNAME --admin|--agent` (password from a prompt or --password-stdin) and
    `users token USERNAME` (prints a new API token once; only its digest is stored)."""
    import getpass

    from core.auth.tokens import create_token, create_user
    from core.storage.models import User

    runtime = _runtime(args)
    if args.action == "create":
        if args.role is None:
            print("hookline: users create needs --admin or --agent", file=sys.stderr)
            return EXIT_CONFIG
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"password for {args.username}: ")
            if getpass.getpass("again: ") != password:
                print("hookline: the passwords differ", file=sys.stderr)
                return 1

    async def work() -> int:
        if args.action == "create":
            try:
                user = await create_user(args.username, password, args.role)
            except ValueError as exc:
                print(f"hookline: {exc}", file=sys.stderr)
                return 1
            print(f"user {user.username} created ({user.role})")
            return 0
        user = await User.get_or_none(username=args.username)
        if user is None:
            print(f"hookline: no user {args.username!r}", file=sys.stderr)
            return 1
        print(await create_token(user))
        return 0

    return asyncio.run(_with_storage(runtime, work))


def simulate(args: argparse.Namespace) -> int:
    import httpx

    runtime = _runtime(args)
    provider = runtime.dispatch.providers.get(args.provider)
    if provider is None:
        print(f"hookline: {args.provider!r} is not an enabled provider", file=sys.stderr)
        return EXIT_CONFIG
    if not provider.implements("provider_simulate_webhook"):
        print(f"hookline: provider {args.provider!r} cannot simulate webhooks", file=sys.stderr)
        return 1
    numbers = runtime.host.numbers_of(args.provider)
    number = runtime.host.number(args.number) if args.number else (numbers[0] if numbers else None)
    if number is None or number.provider != args.provider:
        print(f"hookline: no {args.provider} number {'with id ' + repr(args.number) if args.number else 'configured'}", file=sys.stderr)
        return EXIT_CONFIG
    server = runtime.settings.server
    base = (args.url or f"http://{server.host}:{server.port}").rstrip("/")
    simulated = asyncio.run(_with_storage(
        runtime, lambda: provider.simulate_webhook(runtime.host, number, args.sender, args.text, server.public_url)
    ))
    try:
        response = httpx.request(simulated.method, base + simulated.path, content=simulated.body, headers=simulated.headers)
    except httpx.TransportError as exc:
        print(f"hookline: cannot reach the server at {base}: {exc}", file=sys.stderr)
        return 1
    print(f"{response.status_code} {response.headers.get('content-type', '')}\n{response.text}")
    return 0 if response.is_success else 1


def new_plugin(args: argparse.Namespace) -> int:
    """Write a plugin package skeleton whose tests pass as written (core/scaffold)."""
    from core.scaffold import ScaffoldError, new_plugin as write_plugin

    try:
        written = write_plugin(args.name, args.kind, Path(args.dir))
    except ScaffoldError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote a {args.kind} plugin in {written.folder}:")
    for path in written.files:
        print(f"  {path.relative_to(written.folder)}")
    print(f"next: cd {written.folder} && pip install -e '.[test]' && pytest   (then follow the TODO comments)")
    return 0


# --------------------------------------------------------------------------- plumbing


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers, *[[("" if v is None else str(v)) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())


def _clip(text: str | None, width: int = 48) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


class _CommandParser(argparse.ArgumentParser):
    """A command's parser that takes options before, between or after its positionals. Plain
    argparse binds an optional positional (`simulate`'s text) to its default at the first
    positional it meets, so `simulate recorder --number n1 "hola"` would reject "hola"."""

    _intermixing = False

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        if self._intermixing:  # parse_known_intermixed_args calls back here for each of its passes
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help=f"config file (default: ${CONFIG_ENV_VAR} or config/hookline.toml)")
    common.add_argument("--log-format", choices=["text", "json"], help="overrides [logging] format")

    parser = argparse.ArgumentParser(prog="hookline", description="WhatsApp chat-ops server with provider and workflow plugins.")
    commands = parser.add_subparsers(title="commands", parser_class=_CommandParser)

    def command(name: str, function: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(command=function)
        return sub

    sub = command("serve", serve, "run the server (webhooks, API, console, queue workers)")
    sub.add_argument("--host", help="overrides [server] host")
    sub.add_argument("--port", type=int, help="overrides [server] port")
    sub.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    sub.add_argument("--no-queue", action="store_true", help="run no queue workers: `hookline worker` processes do the jobs")
    command("worker", worker, "run queue workers only, no HTTP (beside `serve --no-queue`)")

    command("check-config", check_config, "validate the config file and print every problem")
    command("migrate", migrate, "apply database migrations")

    sub = command("plugins", plugins, "list installed plugins: name, version, enabled, role, hooks")
    sub.add_argument("--json", action="store_true")

    sub = command("send", send, "queue a text message; prints its id (a running server sends it)")
    sub.add_argument("--number", required=True, help="the id of one of our numbers")
    sub.add_argument("--to", required=True, help="the customer's phone, +E164")
    sub.add_argument("text")

    sub = command("messages", messages, "list stored messages with their status")
    sub.add_argument("--conversation", type=int)
    sub.add_argument("--limit", type=int, default=200)
    sub.add_argument("--json", action="store_true")

    sub = command("status", status, "ask the provider for a message's current status and store it")
    sub.add_argument("message_id", type=int)

    sub = command("simulate", simulate, "post a correctly proven sample webhook to a running server")
    sub.add_argument("provider")
    sub.add_argument("text", nargs="?", default="hola")
    sub.add_argument("--number", help="our number's id (default: the provider's first)")
    sub.add_argument("--from", dest="sender", default="+15550100123", help="the customer's phone")
    sub.add_argument("--url", help="server base URL (default: http://[server] host:port)")

    sub = command("transfer", transfer, "hand a conversation to the bot or to a human")
    sub.add_argument("conversation_id", type=int)
    sub.add_argument("--to", required=True, choices=["bot", "human"])
    sub.add_argument("--reason")
    sub.add_argument("--by", default="cli", help="who did it (default: cli)")

    sub = command("users", users, "manage console and API users: create (admin or agent), token (a new API token)")
    sub.add_argument("action", choices=["create", "token"])
    sub.add_argument("username")
    role = sub.add_mutually_exclusive_group()
    role.add_argument("--admin", dest="role", action="store_const", const="admin", help="create: numbers and settings")
    role.add_argument("--agent", dest="role", action="store_const", const="agent", help="create: conversations")
    sub.add_argument("--password-stdin", action="store_true", help="create: read the password from the first line of stdin")

    sub = command("numbers", numbers, "list numbers: provider, phone, managed by config, connection state")
    sub.add_argument("--json", action="store_true")

    sub = command("new-plugin", new_plugin, "write a plugin package skeleton (provider or workflow) whose tests pass as written")
    sub.add_argument("name", help="the plugin's name, also its Python package's name (e.g. acme_sms)")
    sub.add_argument("--kind", required=True, choices=["provider", "workflow"])
    sub.add_argument("--dir", default=".", help="where to write the <name>/ folder (default: the current directory)")

    for plugin_name, contributed in _installed_commands():
        sub = command(contributed.name, functools.partial(_plugin_command, plugin_name, contributed), contributed.help)
        if contributed.configure is not None:
            contributed.configure(sub)
    return parser


def _installed_commands() -> list[tuple[str, Command]]:
    from core.plugins import Catalog, discover

    try:
        return Catalog(discover()).commands()
    except PluginError as exc:  # a broken plugin must not take the built-in commands down with it
        print(f"hookline: plugin commands unavailable: {exc}", file=sys.stderr)
        return []


def _plugin_command(plugin_name: str, contributed: Command, args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    if plugin_name not in runtime.settings.enabled_plugins:
        print(f"hookline: `{contributed.name}` comes from plugin {plugin_name!r}, which is not enabled in {runtime.settings.path}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_with_storage(runtime, lambda: contributed.run(runtime.host, args)))


if __name__ == "__main__":
    sys.exit(main())
