"""`hookline new-plugin`: the skeletons it writes pass their own tests at once (pytest in a
subprocess, in the generated folder, as an author would run it), and bad names or an existing
folder are refused with a clear message and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from core.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_generated_tests(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("HOOKLINE_TEST_POSTGRES", None)  # SQLite: the skeleton's own tests, not the backends again
    # `-p core.testing.plugin` names the plugin the pytest11 entry point registers (the same
    # plugin, not a second one): the run does not depend on how this checkout was installed.
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "core.testing.plugin", "-p", "no:cacheprovider"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("kind", "tests"), [("provider", 16), ("workflow", 2)])
def test_a_generated_plugin_passes_its_own_tests(tmp_path, capsys, kind, tests):
    assert main(["new-plugin", "acme_chat", "--kind", kind, "--dir", str(tmp_path)]) == 0
    folder = tmp_path / "acme_chat"
    assert f"wrote a {kind} plugin in {folder}" in capsys.readouterr().out
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["hookline"] == {"acme_chat": "acme_chat"}
    assert project["project"]["name"] == "acme-chat"
    module = (folder / "acme_chat" / "__init__.py").read_text()
    assert module.count("TODO") >= 2 and "@hookimpl" in module
    result = run_generated_tests(folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{tests} passed" in result.stdout


@pytest.mark.parametrize(("name", "words"), [
    ("my-plugin", "not a valid Python package name"),
    ("1st", "not a valid Python package name"),
    ("class", "is a Python keyword"),
    ("Acme", "package names are lower case ('acme')"),
    ("json", "already taken"),
    ("core", "already taken"),
])
def test_names_that_are_no_package_name_are_refused(tmp_path, capsys, name, words):
    assert main(["new-plugin", name, "--kind", "workflow", "--dir", str(tmp_path)]) == 2
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_left_alone(tmp_path, capsys):
    (tmp_path / "acme_chat").mkdir()
    (tmp_path / "acme_chat" / "notes.txt").write_text("mine")
    assert main(["new-plugin", "acme_chat", "--kind", "provider", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "acme_chat").iterdir()] == ["notes.txt"]
