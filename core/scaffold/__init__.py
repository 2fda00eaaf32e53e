"""`hookline new-plugin`: a plugin package skeleton that works as written and says where to fill in.

A provider skeleton is a complete small channel (a sketched wire format, HMAC-signed webhooks, a
REST send call, its errors) with a conformance test class wired to a tiny fake API; a workflow
skeleton answers a keyword and is tested with the kit's loopback channel. Both pass their tests
the moment they are written, so an author changes one thing at a time from green.
"""

from __future__ import annotations

import keyword
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

KINDS = ("provider", "workflow")
#: Names hookline's own packages (and common tooling) already use: a plugin called so would
#: shadow them on the import path.
TAKEN = frozenset({"core", "plugins", "tests", "examples", "hookline", "pytest", "setuptools", "pip"})
_FILES = {
    "provider": (("pyproject.toml", "pyproject.toml.j2"), ("README.md", "README.md.j2"),
                 ("{name}/__init__.py", "provider.py.j2"), ("tests/test_{name}.py", "test_provider.py.j2")),
    "workflow": (("pyproject.toml", "pyproject.toml.j2"), ("README.md", "README.md.j2"),
                 ("{name}/__init__.py", "workflow.py.j2"), ("tests/test_{name}.py", "test_workflow.py.j2")),
}


class ScaffoldError(Exception):
    """The plugin cannot be written as asked (a bad name, an existing folder)."""


@dataclass(frozen=True)
class Written:
    folder: Path
    files: list[Path]


def check_name(name: str) -> None:
    """A plugin name is its Python package's name: a lower-case identifier that shadows nothing."""
    if not name.isidentifier() or not name.isascii():
        suggestion = re.sub(r"[^0-9A-Za-z_]", "_", name).lower()
        raise ScaffoldError(
            f"{name!r} is not a valid Python package name: use letters, digits and underscores, not starting with a digit"
            + (f" (e.g. {suggestion!r})" if suggestion.isidentifier() and suggestion != name else "")
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword, not a usable package name")
    if name != name.lower():
        raise ScaffoldError(f"{name!r}: package names are lower case ({name.lower()!r})")
    if name in sys.stdlib_module_names or name in TAKEN:
        raise ScaffoldError(f"{name!r} is already taken (the standard library or hookline uses it): it would shadow that package")


def new_plugin(name: str, kind: str, parent: Path) -> Written:
    """Write `parent/<name>/` for a plugin of `kind`; refuses an existing folder."""
    check_name(name)
    if kind not in KINDS:
        raise ScaffoldError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    folder = parent / name
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists: choose another name or --dir (nothing was written)")
    environment = Environment(loader=PackageLoader("core.scaffold", "templates"), undefined=StrictUndefined,
                              keep_trailing_newline=True, autoescape=False)
    values = {"name": name, "kind": kind, "distribution": name.replace("_", "-"),
              "camel": "".join(part.capitalize() for part in name.split("_"))}
    written: list[Path] = []
    for target, template in _FILES[kind]:
        path = folder / target.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(environment.get_template(template).render(values), encoding="utf-8")
        written.append(path)
    return Written(folder, written)
