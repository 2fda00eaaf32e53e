"""The TOML configuration: read, interpolate, validate — every problem reported at once.

Each problem names the file, the key path and what was expected, so a team can fix a file in one
pass. Plugin tables and number settings are validated by the models the plugins contribute.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from core.interpolate import interpolate
from core.limits import LimitSetting, over_cap
from core.types import Number, ProviderLimits

DEFAULT_CONFIG_PATH = Path("config/hookline.toml")
CONFIG_ENV_VAR = "HOOKLINE_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    data_dir: str = "data"

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an absolute http:// or https:// URL")
        return value.rstrip("/")


class DatabaseConfig(_Section):
    url: str = "sqlite://data/hookline.sqlite3"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
            raise ValueError("expected a sqlite://PATH or postgres://USER@HOST:PORT/DB URL")
        return value


class QueueConfig(_Section):
    # auto: pgqueuer on PostgreSQL (scale mode), the embedded queue on SQLite
    backend: Literal["auto", "embedded", "pgqueuer"] = "auto"
    concurrency: int = Field(default=8, ge=1, le=256)
    max_attempts: int = Field(default=10, ge=1)
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    # A send waits this long at most inside its job for its rate-limit slot; a later slot gives
    # the job back to the queue instead (core/ratelimit.py), without using an attempt.
    rate_limit_max_wait_seconds: float = Field(default=2.0, ge=0, le=60)


class MediaConfig(_Section):
    url_ttl_seconds: int = Field(default=3600, gt=0)
    max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


def _ip_network(value: str) -> str:
    """An address or network as `ipaddress` writes it (`10.0.0.0/8`, `::1/128`)."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError("expected an IP address or network such as 127.0.0.1/32 or ::1/128") from None


class MetricsConfig(_Section):
    """`GET /metrics` (core/metrics/): who may scrape it, and where processes pool their counts."""

    enabled: bool = True
    # Compared in constant time; never logged, never echoed in a configuration error.
    token: SecretStr | None = None
    # Client addresses or networks that need no token; the default is this machine only.
    allow: list[Annotated[str, AfterValidator(_ip_network)]] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # Where every process on this machine keeps its counters; default: in /dev/shm (core.metrics.directory).
    directory: str | None = None

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None  # `token = "${HOOKLINE_METRICS_TOKEN:-}"` unset: no token
        if len(value.get_secret_value()) < 16:
            raise ValueError("a metrics token must be at least 16 characters")
        return value


class _PluginsSection(BaseModel):
    model_config = ConfigDict(extra="allow")  # the extra keys are the per-plugin tables

    enabled: list[str] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list)


class _NumberEntry(_Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    provider: str
    phone: str = Field(min_length=1)
    display_name: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    rate_limit: LimitSetting | None = None
    recipient_rate_limit: LimitSetting | None = None


class _File(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    plugins: _PluginsSection = Field(default_factory=_PluginsSection)
    numbers: list[_NumberEntry] = Field(default_factory=list)


class PluginCatalog(Protocol):
    """What config validation needs to know about the installed plugins."""

    def names(self) -> list[str]: ...

    def settings_model(self, name: str) -> type[BaseModel] | None: ...

    def number_settings_model(self, name: str) -> type[BaseModel] | None: ...

    def rate_limits(self, name: str) -> ProviderLimits: ...


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def render(self, path: Path) -> str:
        return f"{path}: {self.key or '(file)'}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problem.render(path) for problem in problems))


@dataclass(frozen=True)
class Settings:
    """A validated configuration."""

    @property
    def queue_backend(self) -> Literal["embedded", "pgqueuer"]:
        if self.queue.backend != "auto":
            return self.queue.backend
        return "embedded" if self.database.url.startswith("sqlite://") else "pgqueuer"

    path: Path
    server: ServerConfig
    database: DatabaseConfig
    queue: QueueConfig
    media: MediaConfig
    logging: LoggingConfig
    metrics: MetricsConfig
    enabled_plugins: tuple[str, ...]
    plugin_modules: tuple[str, ...]
    plugin_settings: Mapping[str, BaseModel] = field(default_factory=dict)
    numbers: tuple[Number, ...] = ()

    def number(self, number_id: str) -> Number | None:
        return next((number for number in self.numbers if number.id == number_id), None)


def resolve_config_path(explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """`--config` wins, then `HOOKLINE_CONFIG`, then `config/hookline.toml`."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV_VAR):
        return Path(env[CONFIG_ENV_VAR])
    return DEFAULT_CONFIG_PATH


def read_config_file(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The file's tables with `${VAR}` references replaced. Raises ConfigError."""
    env = os.environ if env is None else env
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, [Problem("", "file not found (set --config PATH or HOOKLINE_CONFIG)")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [Problem("", f"not valid TOML: {exc}")]) from None
    missing: list[tuple[str, str]] = []
    data = interpolate(data, env, "", missing)
    if missing:
        raise _MissingVariables(path, [Problem(key, f"environment variable ${{{var}}} is not set (use ${{{var}:-default}} for a default)") for key, var in missing], data)
    return data


class _MissingVariables(ConfigError):
    def __init__(self, path: Path, problems: list[Problem], data: dict[str, Any]) -> None:
        super().__init__(path, problems)
        self.data = data


def load_settings(path: Path, catalog: PluginCatalog, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate `path`. Raises ConfigError listing every problem in the file."""
    problems: list[Problem] = []
    try:
        data = read_config_file(path, env)
    except _MissingVariables as exc:  # keep checking the rest of the file
        problems.extend(exc.problems)
        data = exc.data
    sections: dict[str, Any] = {}
    for name, info in _File.model_fields.items():
        model = _model_in(info.annotation)
        if name == "numbers" or model is None:
            continue
        try:
            sections[name] = model.model_validate(data.get(name, {}))
        except ValidationError as exc:  # [metrics] holds a token: never echo what was given there
            problems.extend(_problems_from(exc, name, model, show_input=name != "metrics"))
            sections[name] = None
    for name in data:
        if name not in _File.model_fields:
            problems.append(Problem(name, f"unknown key (expected one of: {', '.join(_File.model_fields)})"))
    entries: list[tuple[int, _NumberEntry]] = []
    raw_numbers = data.get("numbers", [])
    if not isinstance(raw_numbers, list):
        problems.append(Problem("numbers", "expected an array of tables ([[numbers]])"))
        raw_numbers = []
    for index, raw in enumerate(raw_numbers):
        try:
            entries.append((index, _NumberEntry.model_validate(raw)))
        except ValidationError as exc:
            problems.extend(_problems_from(exc, f"numbers[{index}]", _NumberEntry, show_input=True))
    plugins_section: _PluginsSection = sections.get("plugins") or _PluginsSection()

    available = set(catalog.names())
    enabled = plugins_section.enabled
    for index, name in enumerate(enabled):
        if name not in available:
            problems.append(Problem(f"plugins.enabled[{index}]", f"unknown plugin {name!r} (installed: {', '.join(sorted(available)) or 'none'})"))
    if len(set(enabled)) != len(enabled):
        problems.append(Problem("plugins.enabled", "a plugin is listed twice"))

    plugin_settings: dict[str, BaseModel] = {}
    tables = plugins_section.model_extra or {}
    for name, table in tables.items():
        key = f"plugins.{name}"
        if name not in enabled:
            problems.append(Problem(key, f"settings for a plugin that is not enabled (enabled: {', '.join(enabled) or 'none'})"))
            continue
        model = catalog.settings_model(name)
        if model is None:
            problems.append(Problem(key, f"plugin {name!r} takes no settings"))
            continue
        try:
            plugin_settings[name] = model.model_validate(table)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, key, model, show_input=False))
    for name in enabled:
        model = catalog.settings_model(name) if name in available else None
        if model is not None and name not in plugin_settings and name not in tables:
            try:
                plugin_settings[name] = model.model_validate({})
            except ValidationError as exc:
                problems.extend(_problems_from(exc, f"plugins.{name}", model, show_input=False))

    queue_section, database_section = sections.get("queue"), sections.get("database")
    if queue_section and database_section and queue_section.backend == "pgqueuer" and database_section.url.startswith("sqlite://"):
        problems.append(Problem("queue.backend", "pgqueuer needs a PostgreSQL [database] url (it is sqlite://…); use \"auto\" or \"embedded\""))

    metrics_section = sections.get("metrics")
    if metrics_section and metrics_section.enabled and metrics_section.token is None and not metrics_section.allow:
        problems.append(Problem("metrics", "/metrics would refuse everyone: set token or allow, or enabled = false"))

    numbers: list[Number] = []
    seen_ids: set[str] = set()
    for index, entry in entries:
        key = f"numbers[{index}]"
        if entry.id in seen_ids:
            problems.append(Problem(f"{key}.id", f"duplicate number id {entry.id!r}"))
        seen_ids.add(entry.id)
        model = catalog.number_settings_model(entry.provider) if entry.provider in available else None
        if entry.provider not in enabled or model is None:
            providers = [name for name in enabled if name in available and catalog.number_settings_model(name)]
            problems.append(Problem(f"{key}.provider", f"{entry.provider!r} is not an enabled provider (enabled providers: {', '.join(providers) or 'none'})"))
            continue
        try:
            settings = model.model_validate(entry.settings)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, f"{key}.settings", model, show_input=False))
            continue
        rate_limit = entry.rate_limit.limit() if entry.rate_limit else None
        too_fast = over_cap(catalog.rate_limits(entry.provider), entry.provider, rate_limit)
        if too_fast:
            problems.append(Problem(f"{key}.rate_limit", too_fast))
            continue
        recipient_rate_limit = entry.recipient_rate_limit.limit() if entry.recipient_rate_limit else None
        numbers.append(Number(entry.id, entry.provider, entry.phone, entry.display_name, settings, rate_limit, recipient_rate_limit))

    if problems:
        raise ConfigError(path, _one_problem_per_unset_variable(problems))
    return Settings(
        path=path,
        server=sections["server"],
        database=sections["database"],
        queue=sections["queue"],
        media=sections["media"],
        logging=sections["logging"],
        metrics=sections["metrics"],
        enabled_plugins=tuple(enabled),
        plugin_modules=tuple(plugins_section.modules),
        plugin_settings=plugin_settings,
        numbers=tuple(numbers),
    )


def _one_problem_per_unset_variable(problems: list[Problem]) -> list[Problem]:
    """An unset variable also fails validation of its key; the unset variable is the news."""
    unset = {problem.key for problem in problems if problem.message.startswith("environment variable")}
    return [p for p in problems if p.key not in unset or p.message.startswith("environment variable")]


def _problems_from(exc: ValidationError, prefix: str, model: type[BaseModel], *, show_input: bool) -> list[Problem]:
    """Pydantic errors as (key path, what was expected). Inputs are echoed only outside provider
    and plugin settings, where no secret can be."""
    problems = []
    for error in exc.errors(include_url=False):
        location = _key_path(prefix, error["loc"])
        if error["type"] == "extra_forbidden":
            message = f"unknown key (expected one of: {_allowed_keys(model, error['loc'])})"
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            if show_input and not isinstance(given, (dict, list)):
                message += f" (got {given!r})"
            elif error["type"] != "value_error":
                message += f" (got a {type(given).__name__})"
        problems.append(Problem(location, message))
    return problems


def _key_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The keys of the (nested) model that rejected an unknown key."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None:
            break
        if isinstance(part, str):
            field_info = current.model_fields.get(part)
            current = _model_in(field_info.annotation) if field_info else None
    return ", ".join(current.model_fields) if current else "see docs/configuration.md"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
