"""Every command's help, `-h` and `-V`, and shell completion as an installed `costguard` has it.

The help test walks the whole command tree, so a command added later without placeholders in
capitals (Typer's `<str>`, `{queue}`, `<list[Path]>`) fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from costguard.cli.app import app
from sim_cli import costguard_command

METAVAR = re.compile(
    r"^(?:[A-Z][A-Z0-9_]*(?:[|,][A-Z0-9_]+)*(?:\.\.\.)?|\[[A-Z][A-Z0-9_]*\]|\[[a-z0-9_|-]+\])$"
)
"""A placeholder as help shows it: `QUEUE`, `PATH|URL`, `M1,M2`, `RUN...`, `[SCENARIO]` (an
optional value), `[table|json]` (the values to choose from)."""
TYPER_STYLE = re.compile(r"<[a-z][^>]*>|\{[a-z_]+\}")


def commands() -> Iterator[tuple[str, ...]]:
    """The path of every command and group, from the root (`()`) down."""

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(app), ())


COMMANDS = list(commands())


def entries(help_text: str) -> Iterator[str]:
    """The first column of each Arguments/Options entry of a help text."""
    section = None
    for line in help_text.splitlines():
        if re.match(r"^\S.*:$", line):
            section = line
            continue
        if section in ("Arguments:", "Options:") and re.match(r"^  \S", line):
            yield re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]


def placeholders(entry: str) -> list[str]:
    """The words of an entry that are not option names (`--max-usd USD` -> `USD`)."""
    words = entry.replace(", ", " ").split()
    return [w for w in words if not w.startswith("-") and w != "/"]


def test_the_tree_has_every_command() -> None:
    """The walk sees nested commands (a broken walk would pass the next test vacuously)."""
    assert {("estimate",), ("runs", "prune"), ("simulate", "serve"), ("budget", "set")} <= set(
        COMMANDS
    )
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "costguard")
def test_help_shows_placeholders_in_capitals(
    cli: Callable[..., Any], path: tuple[str, ...]
) -> None:
    """Usage line and every argument and option: QUEUE, USD, DIR, [table|json]; never <str>."""
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    usage = result.out.splitlines()[0]
    assert usage.startswith(f"Usage: costguard {' '.join(path)}".rstrip())
    assert not TYPER_STYLE.search(usage), usage
    found = list(entries(result.out))
    assert found, result.out
    for entry in found:
        assert not TYPER_STYLE.search(entry), f"costguard {' '.join(path)}: {entry}"
        for word in placeholders(entry):
            assert METAVAR.match(word), f"costguard {' '.join(path)}: {entry!r} shows {word!r}"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "costguard")
def test_dash_h_is_help_everywhere(cli: Callable[..., Any], path: tuple[str, ...]) -> None:
    """`-h` prints the same help as `--help`, on every command and group."""
    short, long = cli(*path, "-h"), cli(*path, "--help")
    assert (short.code, short.out) == (0, long.out)


def test_the_placeholders_of_the_main_commands(cli: Callable[..., Any]) -> None:
    """A few entries as a reader sees them."""
    estimate = cli("estimate", "-h").out
    assert estimate.startswith("Usage: costguard estimate [OPTIONS] QUEUE\n")
    assert re.search(
        r"^  QUEUE  Queue file \(JSONL\) to price; - reads it from stdin", estimate, re.M
    )
    for entry in ("--max-usd USD", "--as-of DATE", "--pricing DIR"):
        assert f"\n  {entry} " in estimate
    assert "\n  --output [table|json|csv|markdown]\n" in estimate  # its help on the next line
    assert "\n  --diff DATE1 DATE2 " in cli("prices", "-h").out
    run = cli("run", "-h").out
    assert run.startswith("Usage: costguard run [OPTIONS] [QUEUE]\n")
    for entry in ("--poll-interval S", "--retry RUN", "--concurrency N", "--simulate [SCENARIO]"):
        assert f"\n  {entry} " in run
    assert cli("status", "-h").out.startswith("Usage: costguard status [OPTIONS] RUN\n")
    assert cli("runs", "rm", "-h").out.startswith("Usage: costguard runs rm [OPTIONS] RUN...\n")
    assert "\n  --upstream URL " in cli("simulate", "record", "-h").out


def test_dash_v_is_the_version(cli: Callable[..., Any]) -> None:
    """`-V` and `--version` print `costguard VERSION`."""
    expected = f"costguard {version('costguard')}\n"
    assert cli("-V").out == cli("--version").out == expected


# --- shell completion, as installed ---------------------------------------------------------


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """An environment where `costguard` on PATH is this costguard, HOME is empty, and the
    shell is named rather than detected (Typer's switch for that)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = costguard_command()
    shim = bin_dir / "costguard"
    shim.write_text("#!/bin/sh\nexec " + " ".join(f"'{c}'" for c in command) + ' "$@"\n')
    shim.chmod(0o755)
    user_home = tmp_path / "user"
    user_home.mkdir()
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(user_home),
        "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }


def sh(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command with `env`; its output."""
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_show_completion_prints_a_script_for_each_shell(installed: dict[str, str]) -> None:
    """`--show-completion SHELL` prints the script that calls back `costguard`."""
    for shell, marker in (
        ("bash", "complete -o default -F _costguard_completion costguard"),
        ("zsh", "#compdef costguard"),
        ("fish", "complete --command costguard"),
    ):
        done = sh(installed, "costguard", "--show-completion", shell)
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout
        assert "_COSTGUARD_COMPLETE" in done.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed to complete in bash")
def test_installed_bash_completion_completes_commands_options_and_run_ids(
    installed: dict[str, str], tmp_path: Path
) -> None:
    """`--install-completion bash` writes a script bash sources; Tab then completes commands,
    options and run ids."""
    done = sh(installed, "costguard", "--install-completion", "bash")
    assert done.returncode == 0, done.stderr
    script = Path(installed["HOME"]) / ".bash_completions" / "costguard.sh"
    assert script.is_file()
    assert f"source '{script}'" in (Path(installed["HOME"]) / ".bashrc").read_text()
    from test_catalog import journal, save

    save(Path(installed["COSTGUARD_HOME"]), journal("run-b50721029934"))

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        program = (
            f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
            f"COMP_CWORD={len(words) - 1}; _costguard_completion costguard; "
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = sh(installed, "bash", "--norc", "-c", program)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("costguard sta") == ["status"]
    assert "prune" in complete("costguard runs ")
    assert "--max-usd" in complete("costguard estimate --max")
    assert complete("costguard status run-b5") == ["run-b50721029934"]
