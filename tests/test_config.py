"""Configuration: interpolation, validation, and every problem reported with file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_settings, resolve_config_path
from core.interpolate import interpolate
from core.plugins import Catalog, explicit
from plugins import bot_transfer, twilio
from tests import recording_provider

CATALOG = Catalog(explicit({"recorder": recording_provider, "twilio": twilio, "bot_transfer": bot_transfer}))
TWILIO_SID = "AC" + "0" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hookline.toml"
    path.write_text(text)
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, CATALOG, env or {})
    return str(caught.value).splitlines()


def test_interpolation_forms():
    missing: list[tuple[str, str]] = []
    env = {"A": "1", "EMPTY": ""}
    data = {"x": "${A}", "y": "${B:-dflt}", "z": ["${EMPTY:-fallback}", "$${A}", "${EMPTY}"], "n": 3, "m": "${NOPE}"}
    assert interpolate(data, env, "", missing) == {
        "x": "1", "y": "dflt", "z": ["fallback", "${A}", ""], "n": 3, "m": "${NOPE}",
    }
    assert missing == [("m", "NOPE")]


def test_defaults_are_the_embedded_default(tmp_path):
    settings = load_settings(write(tmp_path, ""), CATALOG, {})
    assert settings.database.url == "sqlite://data/hookline.sqlite3"
    assert settings.server.port == 8000
    assert settings.server.max_body_bytes == 1024 * 1024
    assert settings.enabled_plugins == ()


def test_unknown_key_missing_variable_and_wrong_type_are_all_reported(tmp_path):
    path = write(tmp_path, '[server]\nprot = 1\nport = "eighty"\n[database]\nurl = "${DB_URL}"\n')
    lines = problems(path)
    assert len(lines) == 3, lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    text = "\n".join(lines)
    assert "server.prot: unknown key (expected one of: host, port, public_url, max_body_bytes, data_dir)" in text
    assert "database.url: environment variable ${DB_URL} is not set" in text
    assert "server.port: Input should be a valid integer" in text and "'eighty'" in text


def test_number_settings_are_validated_by_the_provider_schema(tmp_path):
    path = write(
        tmp_path,
        f"""
[plugins]
enabled = ["twilio"]
[[numbers]]
id = "sales"
provider = "twilio"
phone = "+14155238886"
[numbers.settings]
account_sid = "{TWILIO_SID}"
auth_token = "super-secret-token"
colour = "red"
[[numbers]]
id = "sales"
provider = "twilio"
phone = "+14155238887"
[numbers.settings]
account_sid = "nope"
""",
    )
    text = "\n".join(problems(path))
    assert "numbers[0].settings.colour: unknown key (expected one of: account_sid, auth_token" in text
    assert "numbers[1].id: duplicate number id 'sales'" in text
    assert "numbers[1].settings.account_sid: String should match pattern" in text
    assert "numbers[1].settings.auth_token: required key is missing" in text
    assert "super-secret-token" not in text  # settings inputs are never echoed


def test_provider_must_be_enabled_and_plugins_must_exist(tmp_path):
    path = write(
        tmp_path,
        """
[plugins]
enabled = ["telegram", "bot_transfer"]
[plugins.twilio]
x = 1
[plugins.bot_transfer]
after = "sideways"
[[numbers]]
id = "a"
provider = "twilio"
phone = "+1"
""",
    )
    text = "\n".join(problems(path))
    assert "plugins.enabled[0]: unknown plugin 'telegram' (installed: bot_transfer, recorder, twilio)" in text
    assert "plugins.twilio: settings for a plugin that is not enabled" in text
    assert "plugins.bot_transfer.after: Input should be 'bot' or 'close'" in text
    assert "numbers[0].provider: 'twilio' is not an enabled provider" in text


def test_valid_file_yields_typed_settings_with_secrets_hidden(tmp_path):
    path = write(
        tmp_path,
        f"""
[server]
public_url = "https://hooks.example.com/"
[plugins]
enabled = ["twilio", "bot_transfer"]
[plugins.bot_transfer]
after = "close"
[[numbers]]
id = "sales"
provider = "twilio"
phone = "whatsapp:+14155238886"
display_name = "Sales"
[numbers.settings]
account_sid = "{TWILIO_SID}"
auth_token = "${{TWILIO_TOKEN}}"
""",
    )
    settings = load_settings(path, CATALOG, {"TWILIO_TOKEN": "tok-123"})
    assert settings.server.public_url == "https://hooks.example.com"
    number = settings.number("sales")
    assert number is not None and number.settings.auth_token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(number) and "tok-123" not in repr(number.settings)
    assert settings.plugin_settings["bot_transfer"].after == "close"


def test_not_toml_and_missing_file(tmp_path):
    assert "not valid TOML" in problems(write(tmp_path, "[server\n"))[0]
    assert "file not found" in problems(tmp_path / "absent.toml")[0]


def test_config_path_resolution():
    assert resolve_config_path("x.toml", {"HOOKLINE_CONFIG": "y.toml"}) == Path("x.toml")
    assert resolve_config_path(None, {"HOOKLINE_CONFIG": "y.toml"}) == Path("y.toml")
    assert resolve_config_path(None, {}) == Path("config/hookline.toml")


def test_shipped_config_is_valid():
    root = Path(__file__).resolve().parent.parent
    from core.plugins import discover

    settings = load_settings(root / "config" / "hookline.toml", Catalog(discover()), {})
    assert settings.database.url.startswith("sqlite://")


def test_the_queue_backend_follows_the_database_unless_told_and_pgqueuer_needs_postgres(tmp_path):
    def settings(text: str):
        return load_settings(write(tmp_path, text), CATALOG, {})

    assert settings("").queue_backend == "embedded"
    assert settings('[database]\nurl = "postgres://u@h:5432/db"\n').queue_backend == "pgqueuer"
    assert settings('[database]\nurl = "postgres://u@h:5432/db"\n[queue]\nbackend = "embedded"\n').queue_backend == "embedded"
    [problem] = problems(write(tmp_path, '[queue]\nbackend = "pgqueuer"\n'))
    assert problem.startswith(f"{tmp_path / 'hookline.toml'}: queue.backend: pgqueuer needs a PostgreSQL")


def test_a_postgres_url_may_name_a_unix_socket_and_keeps_pool_options_for_the_pool_only():
    """`?host=/dir` as libpq spells it (cheaper than TCP on the same machine); `maxsize` is Tortoise's."""
    from core.pgqueue import asyncpg_dsn
    from core.storage.database import tortoise_config

    url = "postgres://hookline@/hookline?host=/var/run/postgresql&maxsize=9"
    credentials = tortoise_config(url)["connections"]["default"]["credentials"]
    assert (credentials["host"], credentials["database"], credentials["maxsize"]) == ("/var/run/postgresql", "hookline", "9")
    assert asyncpg_dsn(url) == "postgresql://hookline@/hookline?host=%2Fvar%2Frun%2Fpostgresql"
