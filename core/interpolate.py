"""`${VAR}` and `${VAR:-default}` in configuration strings, with every missing variable reported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str], path: str, missing: list[tuple[str, str]]) -> Any:
    """Return `value` with references replaced; append (key path, variable) for each unset one.

    `$$` stands for a literal `$`. A missing variable leaves the string as written so that the
    rest of the file can still be checked and every problem reported at once.
    """
    if isinstance(value, str):
        return _interpolate_string(value, env, path, missing)
    if isinstance(value, dict):
        return {
            key: interpolate(item, env, f"{path}.{key}" if path else key, missing)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [interpolate(item, env, f"{path}[{index}]", missing) for index, item in enumerate(value)]
    return value


def _interpolate_string(text: str, env: Mapping[str, str], path: str, missing: list[tuple[str, str]]) -> str:
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if default is not None:  # shell semantics: the default also replaces an empty value
            return env.get(name) or default
        if name in env:
            return env[name]
        missing.append((path, name))
        return match.group(0)

    return _REFERENCE.sub(replace, text)
