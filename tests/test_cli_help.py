"""``bscore --help``: answered without the heavy libraries, and every command and parameter documented.

The help is read by people (and docs/cli.md is generated from the same click tree), so each
command says what it does with an example, and each option and argument says what it takes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bscore_assets.cli import _Command, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("dagster", "pandas", "numpy", "sklearn", "sqlalchemy", "tqdm", "azure")

# Imports the CLI, then renders every command's help as a user would; prints which heavy
# packages were loaded after each step and the help's exit codes.
PROBE = """
import json, sys
import click
from click.testing import CliRunner
import bscore_assets.cli

heavy = {heavy!r}
loaded = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
after_import = loaded()

def paths(command, path=()):
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from paths(sub, (*path, name))

codes = {{" ".join(p): CliRunner().invoke(bscore_assets.cli.main, [*p, "--help"]).exit_code
         for p in paths(bscore_assets.cli.main)}}
print(json.dumps({{"after_import": after_import, "after_help": loaded(), "codes": codes}}))
"""


def command_paths(command: click.Command, path: tuple = ()):
    """Every command of the tree as the words that reach it, the root as ()."""
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from command_paths(sub, (*path, name))


def command_at(path: tuple) -> click.Command:
    command = main
    for name in path:
        command = command.commands[name]
    return command


PATHS = list(command_paths(main))


def test_the_tree_is_walked():
    assert {("score",), ("predictions", "export"), ("models", "import"), ("deadletter", "replay")} <= set(PATHS)


def test_importing_the_cli_and_rendering_help_loads_no_heavy_library(tmp_path):
    # A bad variable too: help must not read the settings (each command checks them when it runs).
    env = {**os.environ, "BSCORE_HOME": str(tmp_path / "bscore"), "BSCORE_START": "soon"}
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.splitlines()[-1])
    assert probe["after_import"] == [], "imported with bscore_assets.cli at module level"
    assert probe["after_help"] == [], "imported while rendering --help"
    assert set(probe["codes"]) == {" ".join(p) for p in PATHS}
    assert set(probe["codes"].values()) == {0}, probe["codes"]


def test_commands_check_the_variables_before_they_run_and_help_does_not_need_them(bscore_home, monkeypatch, tmp_path):
    monkeypatch.setenv("BSCORE_START", "soon")
    assert CliRunner().invoke(main, ["predictions", "export", "--help"]).exit_code == 0
    result = CliRunner().invoke(main, ["predictions", "export", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.stderr.startswith("bscore: BSCORE_START='soon'"), result.output
    assert not (tmp_path / "out").exists()
    # Every command, however deep, is of the class that checks them first.
    leaves = [path for path in PATHS if not isinstance(command_at(path), click.Group)]
    assert all(isinstance(command_at(path), _Command) for path in leaves)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "bscore")
def test_every_command_has_help_with_an_example(path):
    command = command_at(path)
    assert command.help and "Example" in command.help, f"bscore {' '.join(path)}: no help with an Example"
    shown = CliRunner().invoke(main, [*path, "--help"], prog_name="bscore", terminal_width=80)
    assert shown.exit_code == 0, shown.output
    # The example's command keeps its own line (a \b paragraph), written as `bscore ...`.
    lines = [line.strip() for line in shown.output.splitlines()]
    assert any(line.startswith(" ".join(("bscore", *path))) for line in lines), shown.output
    assert ".venv/bin/bscore" not in shown.output


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "bscore")
def test_every_option_and_argument_has_help(path):
    command = command_at(path)
    ctx = click.Context(command, info_name="bscore")
    undocumented = [param.name for param in command.get_params(ctx) if not (param.help or "").strip()]
    assert undocumented == [], f"bscore {' '.join(path)}: no help for {undocumented}"


GROUPS = [path for path in PATHS if isinstance(command_at(path), click.Group)]


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(p) or "bscore")
def test_every_group_lists_its_commands_with_a_whole_short_help(path):
    group = command_at(path)
    missing = [name for name, command in group.commands.items() if not command.short_help]
    assert missing == [], f"bscore {' '.join(path)}: no short_help for {missing}"
    shown = CliRunner().invoke(main, [*path, "--help"], prog_name="bscore", terminal_width=80).output
    listing = shown.split("Commands:", 1)[1].splitlines()
    for name, command in group.commands.items():
        [line] = [line for line in listing if line.split()[:1] == [name]]
        assert line.split(None, 1)[1] == command.short_help  # whole, not cut to "..."
