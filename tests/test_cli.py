"""The `hookline` command, run as a user runs it: the installed console script, in a subprocess.

Commands that touch storage run on SQLite and on PostgreSQL (`database_url`); those that need a
server start a real `hookline serve` (see tests/test_process.py for the process helpers).
"""

from __future__ import annotations

import json
import time
import tomllib

from tests.fake_api import running_fake_api
from tests.helpers import write_config
from tests.test_process import DEFAULT_CONFIG, RECORDER, hookline, messages_json, serving

BUNDLED_PROVIDERS = ("twilio", "meta", "wppconnect")
WORKFLOW_HOOKS = {"on_inbound_message", "on_status_update", "on_conversation_transferred"}


# --------------------------------------------------------------------------- check-config


BAD_CONFIG = """\
[server]
prot = 8000
port = "eighty"

[database]
url = "${HOOKLINE_TEST_NEVER_SET}"
"""

# (key path, what the line must say about it)
BAD_CONFIG_PROBLEMS = [
    ("server.prot", "unknown key"),
    ("database.url", "${HOOKLINE_TEST_NEVER_SET} is not set"),
    ("server.port", "integer"),
]


def _problem_lines(output: str, path: str) -> set[str]:
    return {line for line in output.splitlines() if line.startswith(f"{path}: ")}


def test_check_config_names_every_problem_with_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)

    checked = hookline("check-config", "--config", path, cwd=tmp_path)
    assert checked.returncode != 0
    lines = _problem_lines(checked.stdout + checked.stderr, str(path))
    for key, says in BAD_CONFIG_PROBLEMS:
        assert [line for line in lines if line.startswith(f"{path}: {key}: ") and says in line], (key, lines)

    served = hookline("serve", "--config", path, "--port", "9", cwd=tmp_path, timeout=20)
    assert served.returncode == 2
    assert _problem_lines(served.stdout + served.stderr, str(path)) == lines
    assert not (tmp_path / "data" / "hookline.sqlite3").exists()


def test_check_config_accepts_the_default_config(tmp_path):
    checked = hookline("check-config", "--config", DEFAULT_CONFIG, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{DEFAULT_CONFIG}: OK")
    assert "database: sqlite" in checked.stdout


# --------------------------------------------------------------------------- plugins


def test_plugins_lists_the_bundled_plugins_found_through_entry_points(tmp_path):
    listed = hookline("plugins", "--json", "--config", DEFAULT_CONFIG, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    enabled = set(tomllib.loads(DEFAULT_CONFIG.read_text())["plugins"]["enabled"])
    for name in (*BUNDLED_PROVIDERS, "bot_transfer"):
        assert rows[name]["source"] == "entry point", rows.get(name)
        assert rows[name]["enabled"] is (name in enabled)
        assert rows[name]["version"] not in (None, "", "-")
    for name in BUNDLED_PROVIDERS:
        assert rows[name]["role"] == "provider"
        assert "provider_number_settings_model" in rows[name]["hooks"]
    # bot_transfer is the bundled workflow plugin: never a provider; "workflow" once it handles events.
    workflow = rows["bot_transfer"]
    assert workflow["role"] == ("workflow" if WORKFLOW_HOOKS & set(workflow["hooks"]) else "extension")

    table = hookline("plugins", "--config", DEFAULT_CONFIG, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "version", "enabled", "role"]
    by_name = {line.split()[0]: line.split() for line in lines[1:]}
    for name, row in rows.items():
        assert by_name[name][:4] == [name, row["version"], "yes" if name in enabled else "no", row["role"]]


# --------------------------------------------------------------------------- send, messages, serve


def test_send_is_pending_until_a_running_server_delivers_it(tmp_path, database_url):
    with running_fake_api() as fake:
        fake.answer((201, {"sid": "SM-cli-0001", "status": "queued"}))
        config = write_config(tmp_path, database_url, api_url=fake.url, modules=[RECORDER])

        sent = hookline("send", "--config", config, "--number", "n1", "--to", "+15550100123", "hola", cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip().isdigit(), sent.stdout
        message_id = int(sent.stdout)

        [row] = messages_json(config, tmp_path)
        assert (row["id"], row["direction"], row["status"], row["number"]) == (message_id, "out", "pending", "n1")
        assert (row["text"], row["external_id"]) == ("hola", None)
        assert fake.received == []  # nothing sends without a server

        with serving(config, tmp_path) as server:
            fake.wait_for(1, timeout=15)
            assert [(b["id"], b["to"], b["text"]) for b in fake.received] == [(message_id, "+15550100123", "hola")]
            deadline = time.monotonic() + 15
            while (row := messages_json(config, tmp_path)[0])["status"] == "pending" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert (row["id"], row["status"], row["external_id"]) == (message_id, "queued", "SM-cli-0001")
            code = server.stop()
            assert code == 0, server.output()
        assert len(fake.received) == 1


def test_send_to_an_unknown_number_is_a_clear_error_before_storage(tmp_path):
    database = tmp_path / "hookline.sqlite3"
    config = write_config(tmp_path, f"sqlite://{database}", modules=[RECORDER])
    sent = hookline("send", "--config", config, "--number", "nope", "--to", "+15550100123", "hola", cwd=tmp_path)
    assert sent.returncode == 2
    assert "no number with id 'nope'" in sent.stderr
    assert "Traceback" not in sent.stderr
    assert sent.stdout == ""
    assert not database.exists()


# --------------------------------------------------------------------------- simulate


def test_simulate_posts_a_proven_webhook_that_is_stored(tmp_path, database_url):
    config = write_config(tmp_path, database_url, modules=[RECORDER])
    with serving(config, tmp_path) as server:
        simulated = hookline(
            "simulate", "recorder", "--config", config, "--number", "n1", "--from", "+15550100123", "hola",
            "--url", server.url, cwd=tmp_path,
        )
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert simulated.stdout.startswith("200 ")
        rows = messages_json(config, tmp_path)
        assert [(r["direction"], r["status"], r["number"], r["provider"], r["text"]) for r in rows] == [
            ("in", "received", "n1", "recorder", "hola")
        ]
        assert rows[0]["external_id"].startswith("sim-")
        code = server.stop()
        assert code == 0, server.output()


def test_simulate_without_a_server_is_a_clear_error(tmp_path):
    config = write_config(tmp_path, f"sqlite://{tmp_path}/hookline.sqlite3", modules=[RECORDER])
    simulated = hookline("simulate", "recorder", "--config", config, "--url", "http://127.0.0.1:9", cwd=tmp_path)
    assert simulated.returncode == 1
    assert "cannot reach the server at http://127.0.0.1:9" in simulated.stderr
    assert "Traceback" not in simulated.stderr


def test_simulate_twilio_on_the_default_config_is_stored_and_answered_with_twiml(tmp_path):
    """The shipped config's demo number lets a newcomer try the server without a Twilio account."""
    with serving(DEFAULT_CONFIG, tmp_path) as server:
        simulated = hookline(
            "simulate", "twilio", "--config", DEFAULT_CONFIG, "--number", "demo-twilio", "--from", "+15550100123",
            "hola", "--url", server.url, cwd=tmp_path,
        )
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert simulated.stdout.startswith("200 text/xml")
        assert '<?xml version="1.0" encoding="UTF-8"?><Response />' in simulated.stdout
        rows = messages_json(DEFAULT_CONFIG, tmp_path)
        assert [(r["direction"], r["number"], r["provider"], r["text"]) for r in rows] == [("in", "demo-twilio", "twilio", "hola")]
        assert rows[0]["external_id"].startswith("SM")
        assert server.stop() == 0
        assert "uses the demo auth token" in server.output()


def test_several_worker_processes_share_the_database_and_log_json(tmp_path):
    with serving(DEFAULT_CONFIG, tmp_path, "--workers", "2", "--log-format", "json") as server:
        for text in ("uno", "dos", "tres", "cuatro"):
            simulated = hookline("simulate", "twilio", "--config", DEFAULT_CONFIG, text, "--url", server.url, cwd=tmp_path)
            assert simulated.returncode == 0, simulated.stderr
        rows = messages_json(DEFAULT_CONFIG, tmp_path)
        assert sorted(r["text"] for r in rows) == ["cuatro", "dos", "tres", "uno"]
        assert server.stop() == 0
    records = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    accepted = [r for r in records if r["logger"] == "hookline.webhook" and "accepted" in r["message"]]
    assert len(accepted) == 4
    assert sum("demo auth token" in r["message"] for r in records) == 2  # one per worker process


# --------------------------------------------------------------------------- users


def test_users_create_and_token(tmp_path, database_url):
    import asyncio

    from core.auth.passwords import verify_password
    from core.auth.tokens import digest
    from core.storage.database import close_storage, open_storage
    from core.storage.models import ApiToken, User

    config = write_config(tmp_path, database_url, modules=[RECORDER])
    created = hookline("users", "create", "ada", "--admin", "--password-stdin", "--config", config, cwd=tmp_path,
                       input="a long password\n")
    assert created.returncode == 0, created.stderr
    assert "a long password" not in created.stdout + created.stderr
    again = hookline("users", "create", "ada", "--agent", "--password-stdin", "--config", config, cwd=tmp_path, input="another one\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    short = hookline("users", "create", "bob", "--agent", "--password-stdin", "--config", config, cwd=tmp_path, input="short\n")
    assert short.returncode == 1 and "at least" in short.stderr
    no_role = hookline("users", "create", "bob", "--password-stdin", "--config", config, cwd=tmp_path, input="long enough pw\n")
    assert no_role.returncode == 2
    token = hookline("users", "token", "ada", "--config", config, cwd=tmp_path)
    assert token.returncode == 0, token.stderr
    value = token.stdout.strip()
    assert value.startswith("hl_")

    async def check() -> None:
        await open_storage(database_url)
        try:
            user = await User.get(username="ada")
            assert user.role == "admin" and verify_password(user.password_hash, "a long password")
            [row] = await ApiToken.all()
            assert row.token_hash == digest(value) and value not in row.token_hash
        finally:
            await close_storage()

    asyncio.run(check())
    assert hookline("users", "token", "nobody", "--config", config, cwd=tmp_path).returncode == 1
