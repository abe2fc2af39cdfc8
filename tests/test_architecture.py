"""docs/architecture.md stays true: modules, exit codes and journal transitions match the code."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import costguard
from costguard.errors import EXIT_CODES, CostguardError
from costguard.execution.journal import PART_TRANSITIONS, RUN_TRANSITIONS, Journal

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
PACKAGE = Path(costguard.__file__).resolve().parent

pytestmark = pytest.mark.skipif(
    not DOC.is_file(), reason=f"{DOC} is not beside the tests (wheel test without docs/)"
)


def section(title: str) -> str:
    """The text of one `## title` section of the page."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text`, cells stripped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith(("|---", "| code", "| transition")):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def named_modules() -> set[str]:
    """Module paths named in the Modules section, relative to the package (`run/plan.py`).

    A bullet that starts with a folder (`simulator/openai/`) names its modules bare (`face.py`).
    """
    bullets = re.split(r"\n(?=- )", section("Modules"))
    named: set[str] = set()
    for bullet in bullets:
        names = re.findall(r"`([\w/]+\.py|[\w/]+/)`", bullet)
        folder = names[0] if names and names[0].endswith("/") else ""
        for name in names:
            if name.endswith(".py"):
                named.add(name if "/" in name else folder + name)
    return named


def shipped_modules() -> set[str]:
    """Every module of the installed package, `__init__.py` and `__main__.py` left out."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }


def test_every_module_is_named_and_every_named_module_exists() -> None:
    """The Modules section names each module once it exists, and nothing that does not."""
    named = named_modules()
    missing = sorted(shipped_modules() - {n for n in named if not n.endswith("__init__.py")})
    assert not missing, f"add to docs/architecture.md ## Modules: {missing}"
    gone = sorted(n for n in named if not (PACKAGE / n).is_file())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def test_paths_named_anywhere_on_the_page_exist() -> None:
    """Every `folder/module.py` named outside the Modules section exists too."""
    text = DOC.read_text(encoding="utf-8").replace(section("Modules"), "")
    paths = set(re.findall(r"`((?:\w+/)+\w+\.py)`", text))
    assert paths, "the data-flow sections name modules"
    inside = {p.removeprefix("costguard/") for p in paths if not p.startswith("tests/")}
    gone = sorted(p for p in inside if not (PACKAGE / p).is_file())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def test_exit_codes_match_the_code() -> None:
    """The exit-code table has EXIT_CODES' codes and meanings, in order."""
    rows = table(section("Exit codes"))
    assert [(int(r[0]), r[1]) for r in rows] == list(EXIT_CODES.items())


def all_errors() -> set[type[CostguardError]]:
    """Every CostguardError subclass defined in costguard (every module imported first)."""
    for info in pkgutil.walk_packages(costguard.__path__, "costguard."):
        if info.name != "costguard.__main__":  # runs the CLI when imported
            importlib.import_module(info.name)
    found: set[type[CostguardError]] = set()
    todo = [CostguardError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("costguard")}


def test_every_error_is_listed_under_its_exit_code() -> None:
    """Each error class appears in the row of the code it exits with, and only there."""
    listed = {
        name: int(row[0])
        for row in table(section("Exit codes"))
        for name in re.findall(r"`(\w+Error)`", row[2])
    }
    errors = {cls.__name__: cls.exit_code for cls in all_errors()}
    assert listed == errors


def transitions(title: str) -> dict[str, set[str]]:
    """Per target state, the states the page says it is reached from (self-loops left out)."""
    text = section("The run journal's state machine")
    start = text.index(title)
    end = text.find("\n\n", text.index("| transition", start))
    reached: dict[str, set[str]] = {}
    for name, froms, to, _when in table(text[start:end]):
        method = name.strip("`").removesuffix("()")
        assert callable(getattr(Journal, method, None)), f"Journal has no {method}()"
        sources = {s.strip() for s in froms.split(",")}
        if sources != {to}:
            reached.setdefault(to, set()).update(sources)
    return reached


def test_journal_transitions_match_the_state_machine() -> None:
    """The two transition tables give the same moves as RUN_TRANSITIONS and PART_TRANSITIONS."""
    assert transitions("The run:") == {k: set(v) for k, v in RUN_TRANSITIONS.items()}
    assert transitions("A part (") == {k: set(v) for k, v in PART_TRANSITIONS.items()}
