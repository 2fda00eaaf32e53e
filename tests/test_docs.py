"""The documentation keeps up with the code.

* every hookspec in core/hookspecs.py has a ``### <name>`` section in docs/plugin-hooks.md, in the
  order of the module, and every ``###`` heading there is a hook that exists;
* every key of every configuration section (core/config.py) is documented under its
  ``## [section]`` heading in docs/configuration.md, and no documented key is unknown;
* README.md's "Quick start" holds exactly two shell commands, ``make run`` and ``make test``, and
  both are Makefile targets;
* every ``hookline`` sub-command is in README.md, every module of core/ is in the module table of
  docs/architecture.md, the settings of the bundled plugins are in docs/configuration.md, and
  relative links in the docs resolve;
* docs/api.md's endpoint table lists exactly the endpoints of the OpenAPI document, with their roles.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from core import config, hookspecs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HOOKS_DOC = ROOT / "docs" / "plugin-hooks.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"
RELIABILITY_DOC = ROOT / "docs" / "reliability.md"
MAKEFILE = ROOT / "Makefile"

SPEC_MARKER = f"{hookspecs.PROJECT}_spec"  # what pluggy.HookspecMarker sets on a spec function


def _hookspecs() -> list[str]:
    """Hook names in the order they are defined in core/hookspecs.py."""
    specs = [
        (inspect.getsourcelines(function)[1], name)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, SPEC_MARKER)
    ]
    return [name for _, name in sorted(specs)]


def _headings(text: str, level: int) -> list[str]:
    """Headings of exactly `level` outside fenced code blocks."""
    found = []
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(rf"^{'#' * level} (?!#)(.+?)\s*$", line)
        if match and not in_fence:
            found.append(match.group(1))
    return found


def _section(text: str, heading: str) -> str:
    """The text under the `## heading` line, up to the next `## ` heading (fences respected)."""
    lines = text.splitlines()
    start = None
    in_fence = False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence:
            continue
        if start is None and line.strip() == f"## {heading}":
            start = index + 1
        elif start is not None and re.match(r"^## (?!#)", line):
            return "\n".join(lines[start:index])
    if start is None:
        raise AssertionError(f"no '## {heading}' heading")
    return "\n".join(lines[start:])


# --------------------------------------------------------------------------- hooks


def test_hookspecs_are_found():
    hooks = _hookspecs()
    assert "provider_verify" in hooks and "on_inbound_message" in hooks, hooks


def test_every_hook_is_documented():
    documented = set(_headings(HOOKS_DOC.read_text(encoding="utf-8"), 3))
    missing = [hook for hook in _hookspecs() if hook not in documented]
    assert not missing, f"docs/plugin-hooks.md lacks a '### <name>' section for: {', '.join(missing)}"


def test_every_documented_hook_exists():
    hooks = set(_hookspecs())
    unknown = [name for name in _headings(HOOKS_DOC.read_text(encoding="utf-8"), 3) if name not in hooks]
    assert not unknown, (
        f"docs/plugin-hooks.md has '###' sections for hooks that core/hookspecs.py does not define: "
        f"{', '.join(unknown)} (only hooks may use '###' headings there)"
    )


def test_every_hook_has_an_example_implementing_it():
    text = HOOKS_DOC.read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### (\w+)\n(.*?)(?=^### |\Z)", text, flags=re.MULTILINE | re.DOTALL))
    lacking = [hook for hook in _hookspecs()
               if not any(re.search(rf"def {hook}\(", block) for block in re.findall(r"```python\n(.*?)```", sections.get(hook, ""), flags=re.DOTALL))]
    assert not lacking, f"docs/plugin-hooks.md: no python example defining these hooks: {', '.join(lacking)}"


def test_hooks_are_documented_once_in_the_order_of_hookspecs():
    documented = _headings(HOOKS_DOC.read_text(encoding="utf-8"), 3)
    assert len(documented) == len(set(documented)), "a hook is documented twice"
    assert documented == [hook for hook in _hookspecs() if hook in documented]


# --------------------------------------------------------------------------- configuration


def _config_sections() -> dict[str, type[BaseModel]]:
    """Every top-level table of the config file and the model that validates it."""
    sections = {}
    for name, info in config._File.model_fields.items():
        model = config._model_in(info.annotation)
        assert model is not None, f"config section {name!r} has no model"
        sections[name] = model
    return sections


def test_the_core_sections_are_among_those_checked():
    sections = _config_sections()
    for name, model in (
        ("server", config.ServerConfig),
        ("database", config.DatabaseConfig),
        ("queue", config.QueueConfig),
        ("logging", config.LoggingConfig),
    ):
        assert sections.get(name) is model


@pytest.mark.parametrize("section", sorted(_config_sections()))
def test_every_config_key_is_documented(section):
    heading = f"[[{section}]]" if section == "numbers" else f"[{section}]"
    text = _section(CONFIG_DOC.read_text(encoding="utf-8"), heading)
    keys = _config_sections()[section].model_fields
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"docs/configuration.md '## {heading}' does not document: {', '.join(missing)}"
    documented = re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", text, flags=re.MULTILINE)
    unknown = [key for key in documented if key not in keys]
    assert not unknown, f"docs/configuration.md '## {heading}' documents keys that do not exist: {', '.join(unknown)}"


def _subsection(text: str, heading: str) -> str:
    """The text under `### heading`, up to the next `##` or `###` heading."""
    match = re.search(rf"^### {re.escape(heading)}\s*$(.*?)(?=^##? |^### |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no '### {heading}' heading"
    return match.group(1)


def test_settings_of_the_bundled_plugins_are_documented():
    from core.plugins import Catalog, discover

    catalog = Catalog(discover())
    bundled = [info.name for info in catalog.available.values() if getattr(info.plugin, "__name__", "").startswith("plugins.")]
    assert {"twilio", "meta", "wppconnect", "bot_transfer"} <= set(bundled), bundled
    part = _section(CONFIG_DOC.read_text(encoding="utf-8"), "Settings of the bundled plugins")
    for name in bundled:
        models = [catalog.number_settings_model(name), catalog.settings_model(name)]
        keys = [key for model in models if model is not None for key in model.model_fields]
        text = _subsection(part, name)
        missing = [key for key in keys if f"`{key}`" not in text]
        assert not missing, f"docs/configuration.md '### {name}' does not document: {', '.join(missing)}"
        documented = re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", text, flags=re.MULTILINE)
        unknown = [key for key in documented if key not in keys]
        assert not unknown, f"docs/configuration.md '### {name}' documents settings that do not exist: {', '.join(unknown)}"


# --------------------------------------------------------------------------- architecture


def test_every_core_module_is_in_the_module_table():
    table = _section(ARCHITECTURE_DOC.read_text(encoding="utf-8"), "Modules")
    listed = set(re.findall(r"^\| `(core/[^`]+)` \|", table, flags=re.MULTILINE))
    core = ROOT / "core"
    modules = {f"core/{path.relative_to(core).as_posix()}" for path in core.rglob("*.py") if "migrations" not in path.parts}
    modules.add("core/storage/migrations/")
    modules.discard("core/storage/__init__.py")
    missing = sorted(modules - listed)
    assert not missing, f"docs/architecture.md '## Modules' does not list: {', '.join(missing)}"
    gone = sorted(listed - modules)
    assert not gone, f"docs/architecture.md '## Modules' lists modules that do not exist: {', '.join(gone)}"


# --------------------------------------------------------------------------- README


def _makefile_targets() -> set[str]:
    targets = set()
    for line in MAKEFILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.$()/-][A-Za-z0-9_.$()/ -]*?)\s*:(?!=)", line)
        if match and not line.startswith(("\t", "#")):
            targets.update(match.group(1).split())
    return targets


def test_quick_start_is_exactly_make_run_and_make_test():
    quick_start = _section(README.read_text(encoding="utf-8"), "Quick start")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", quick_start, flags=re.MULTILINE | re.DOTALL)
    commands = [line.strip().removeprefix("$ ") for block in blocks for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"], commands
    assert len(blocks) == 2, "each command in its own code block"
    prose = re.sub(r"^```.*?^```", "", quick_start, flags=re.MULTILINE | re.DOTALL)
    programs = {"make", "pip", "python", "python3", "curl", "hookline", ".venv/bin/hookline", "psql", "export", "sudo"}
    for span in re.findall(r"`([^`\n]+)`", prose):  # inline code: names are fine, invocations are not
        words = span.split()
        if len(words) > 1 and words[0] in programs:
            assert span in ("make run", "make test"), f"Quick start shows another shell command: {span!r}"


def test_quick_start_commands_are_makefile_targets():
    targets = _makefile_targets()
    assert {"run", "test"} <= targets, targets


def test_every_cli_command_is_in_the_readme():
    from core.cli import _parser

    parser = _parser()
    subparsers = next(action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction")
    readme = README.read_text(encoding="utf-8")
    missing = [name for name in subparsers.choices if f"hookline {name}" not in readme]
    assert not missing, f"README.md does not describe: {', '.join(missing)}"


# --------------------------------------------------------------------------- links


TUTORIAL = ROOT / "docs" / "writing-plugins.md"
TELEGRAM_README = ROOT / "examples" / "hookline-telegram" / "README.md"


@pytest.mark.parametrize("document", [README, HOOKS_DOC, CONFIG_DOC, ARCHITECTURE_DOC, TUTORIAL, TELEGRAM_README, RELIABILITY_DOC], ids=lambda path: path.name)
def test_relative_links_resolve(document):
    text = document.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (document.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{document.name}: broken links: {', '.join(broken)}"


def test_the_reliability_doc_names_every_reliability_test_and_only_tests_that_exist():
    """docs/reliability.md's tests (`tests/<file>.py::<test>`) are defined where it says, and
    every test of the tests/test_reliability_*.py modules is among them."""
    named = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", RELIABILITY_DOC.read_text(encoding="utf-8")))
    missing = [f"{path}::{name}" for path, name in sorted(named)
               if not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M)]
    assert not missing, f"docs/reliability.md names tests that do not exist: {', '.join(missing)}"
    suite = {(f"tests/{module.name}", name) for module in sorted((ROOT / "tests").glob("test_reliability_*.py"))
             for name in re.findall(r"^(?:async )?def (test_\w+)\(", module.read_text(encoding="utf-8"), re.M)}
    assert suite and not suite - named, f"docs/reliability.md does not list: {sorted(suite - named)}"


# --------------------------------------------------------------------------- the API

API_DOC = ROOT / "docs" / "api.md"
ROLE_WORDS = {"none": None, "any": ["admin", "agent"], "admin": ["admin"]}


def test_the_api_endpoint_table_matches_the_openapi_document(tmp_path):
    """docs/api.md lists every endpoint once, with the role the router enforces."""
    from core.app import create_app
    from tests.helpers import runtime_for, write_config

    document = create_app(runtime_for(write_config(tmp_path, f"sqlite://{tmp_path}/d.sqlite3"))).state.openapi
    def shape(path: str) -> str:  # the doc may name a parameter {id} where the route says {number_id}
        return re.sub(r"{\w+}", "{}", path)

    actual = {(method.upper(), shape(path)): (None if operation.get("security") == [] else operation["x-roles"])
              for path, methods in document["paths"].items() for method, operation in methods.items()}
    rows = re.findall(r"^\| `(GET|POST|PATCH|PUT|DELETE) (/api/[^`]+)` \| (\w+) \|", _section(API_DOC.read_text(), "Endpoints"),
                      flags=re.MULTILINE)
    documented = {(method, shape(path)): ROLE_WORDS[role] for method, path, role in rows}
    assert len(rows) == len(documented), "an endpoint is listed twice"
    assert documented == actual
