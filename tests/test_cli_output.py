"""`--output json` for scripts: every command takes it, and every failure is one JSON document.

A failing command prints `{"error": {"code", "kind", "message", ...}}` on stdout (a command that
still has its result, `estimate` over budget or a run with requests not ok, prints the result
with the `error` key added); stderr keeps the line a person reads.
"""

from __future__ import annotations

import enum
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer

from costguard.cli import output
from costguard.cli.app import app
from costguard.errors import CostguardError, OutputError, ProviderError, RateCardError
from costguard.execution.options import RunPendingError
from runkit import AS_OF, OPENAI_LINES, scenario_file, write_queue

FAST = ["--poll-interval", "0.05", "--as-of", AS_OF.isoformat()]
GPT = {"prompt": "a lighthouse", "model": "gpt-image-2", "size": "1024x1024", "quality": "low"}
Cli = Callable[..., Any]


def commands() -> dict[str, Any]:
    """Every leaf command of the app, by its path (`budget set`)."""
    found: dict[str, Any] = {}

    def walk(command: Any, path: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(app), [])
    return found


def choices(param: Any) -> set[str]:
    """The values an option's enum annotation (possibly `X | None`) accepts."""
    annotation = param.type_descriptor.annotation
    members = typing.get_args(annotation) or (annotation,)
    return {m.value for t in members if isinstance(t, type) and issubclass(t, enum.Enum) for m in t}


def document(result: Any) -> dict[str, Any]:
    """The one JSON document a command printed on stdout."""
    parsed = json.loads(result.out)
    assert isinstance(parsed, dict)
    return parsed


def test_every_command_takes_output_json() -> None:
    """Walking the Typer app: every command has `--output` with a `json` choice."""
    found = commands()
    assert {"estimate", "cancel", "budget set", "simulate scenarios", "ledger export"} <= set(found)
    lacking = []
    for path, command in found.items():
        options = [p for p in command.params if "--output" in getattr(p, "opts", [])]
        if not options or "json" not in choices(options[0]):
            lacking.append(path)
    assert lacking == []


def test_every_error_class_names_its_own_kind() -> None:
    """Each CostguardError class sets a `kind` of its own (what scripts match on), all distinct."""
    from test_architecture import all_errors

    errors = all_errors()
    kinds = {cls: cls.__dict__.get("kind") for cls in errors}
    assert [cls.__name__ for cls, kind in kinds.items() if kind is None] == []
    assert len(set(kinds.values())) == len(errors)
    assert all(str(kind).replace("_", "").isalpha() for kind in kinds.values())


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["estimate", "missing.jsonl"], id="estimate"),
        pytest.param(["run", "missing.jsonl", "--max-usd", "1"], id="run"),
        pytest.param(["estimate", "q.jsonl", "--as-of", "2026-13-01"], id="bad-date"),
        pytest.param(["budget", "set", "--usd", "lots"], id="budget-set"),
        pytest.param(["prices", "--size", "1K"], id="prices"),
    ],
)
def test_usage_errors_are_json_with_output_json(cli: Cli, argv: list[str]) -> None:
    """Exit 2 from costguard's own checks: `{"error": {"code": 2, "kind": "usage", ...}}` on
    stdout, the same line on stderr."""
    result = cli(*argv, "--output", "json")
    assert result.code == 2
    error = document(result)["error"]
    assert (error["code"], error["kind"]) == (2, "usage")
    assert result.err == f"error: {error['message']}\n"


def test_without_output_json_stdout_stays_empty_on_errors(cli: Cli) -> None:
    """Errors are JSON only when asked for: the human line alone, on stderr."""
    result = cli("estimate", "missing.jsonl")
    assert (result.code, result.out) == (2, "")
    assert result.err == "error: missing.jsonl: queue file not found\n"


@pytest.mark.parametrize(
    ("argv", "option", "message"),
    [
        pytest.param(
            ["estimate", "q.jsonl", "--mode", "cheap"], "--mode", "Invalid value", id="bad-choice"
        ),
        pytest.param(["estimate"], "queue", "Missing argument", id="missing-argument"),
        pytest.param(
            ["cancel", "run-1", "--fast"], "--fast", "No such option: --fast", id="no-such-option"
        ),
        pytest.param(["budget", "set"], "--usd", "Missing option", id="missing-option"),
        pytest.param(
            ["run", "q.jsonl", "--max-usd", "1", "--concurrency", "0"],
            "--concurrency",
            "Invalid value",
            id="out-of-range",
        ),
    ],
)
def test_parser_usage_errors_are_json_too(
    cli: Cli, argv: list[str], option: str, message: str
) -> None:
    """Typer's own usage errors (bad value, missing argument, unknown option) with
    `--output json` are an error object naming the option and the command's usage line."""
    result = cli(*argv, "--output", "json")
    assert result.code == 2
    error = document(result)["error"]
    assert (error["code"], error["kind"], error["option"]) == (2, "usage", option)
    assert message in error["message"]
    assert error["usage"].startswith(f"Usage: costguard {argv[0]}")
    assert "Error:" in result.err  # stderr keeps Typer's own message


def test_output_equals_json_is_recognised(cli: Cli) -> None:
    """`--output=json` asks for JSON as `--output json` does; the last `--output` wins."""
    result = cli("estimate", "missing.jsonl", "--output=json")
    assert document(result)["error"]["kind"] == "usage"
    assert cli("estimate", "missing.jsonl", "--output", "json", "--output", "table").out == ""
    assert output.json_requested(["runs", "--output", "csv", "--output=json"])
    assert not output.json_requested(["runs", "--", "--output", "json"])


def test_grouped_queue_errors_as_json(cli: Cli, tmp_path: Path) -> None:
    """A 2,000-line queue without models: one error in `errors`, with its count and first
    lines, and where it is at the top (file, line, field); distinct errors follow in order."""
    queue = tmp_path / "queue.jsonl"
    lines = [json.dumps({"key": f"k{i}", "prompt": "p"}) for i in range(2000)]
    lines.append(json.dumps({"key": "z", "prompt": "p", "model": "gpt-image3"}))
    queue.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for argv in (["estimate"], ["run", "--max-usd", "1", "--simulate"]):
        result = cli(*argv, queue, "--output", "json", "--as-of", AS_OF.isoformat())
        assert result.code == 2, result.err
        error = document(result)["error"]
        assert (error["code"], error["kind"], error["total"], error["unlisted"]) == (
            2,
            "queue",
            2001,
            0,
        )
        assert (error["file"], error["line"], error["field"]) == (str(queue), 1, "model")
        first, second = error["errors"]
        assert first == {
            "file": str(queue),
            "field": "model",
            "message": "no model: set it on the line or pass --model",
            "count": 2000,
            "lines": list(range(1, 11)),
        }
        assert (second["count"], second["lines"]) == (1, [2001])
        assert second["message"].startswith("unknown model 'gpt-image3'. Did you mean:")
        assert result.err.splitlines() == [
            (
                f"error: {queue}: model: no model: set it on the line or pass --model "
                "(2,000 lines: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...)"
            ),
            f"error: {queue}:2001: model: {second['message']}",
            "2,001 bad lines; nothing was priced",
        ]


def test_unknown_model_error_lists_the_models(cli: Cli) -> None:
    """Exit 2 for an unknown model: the suggestions and every model with its other names and
    status, from the cards."""
    result = cli("prices", "--model", "dall-e-4", "--as-of", "2026-11-26", "--output", "json")
    assert result.code == 2
    error = document(result)["error"]
    assert (error["kind"], error["model"]) == ("unknown_model", "dall-e-4")
    assert error["did_you_mean"] == ["dall-e-3", "dall-e-2"]
    models = {m["id"]: m for m in error["models"]}
    assert models["dall-e-3"]["status"] == "shut_down"
    assert models["gemini-3.1-flash-image"]["also"] == ["nano-banana-2"]
    assert models["gpt-image-2"]["status"] == "available"


def test_estimate_over_budget_is_one_document_with_the_error(cli: Cli, tmp_path: Path) -> None:
    """Exit 3 from estimate: the estimate (with `budget`) and an `error` key, in one document."""
    queue = tmp_path / "q.jsonl"
    write_queue(queue, [GPT | {"key": "a"}, GPT | {"key": "b"}])
    argv = ["estimate", queue, "--as-of", AS_OF.isoformat(), "--max-usd", "0.001"]
    result = cli(*argv, "--output", "json")
    assert result.code == 3
    doc = document(result)
    assert doc["requests"] == 2
    assert doc["budget"]["fits"] is False
    assert doc["error"]["code"] == 3
    assert doc["error"]["kind"] == "over_budget"
    assert doc["error"]["message"].startswith("over budget: the batch maximum ")
    assert "over budget" in result.err
    fits = document(cli(*argv[:-1], "5", "--output", "json"))
    assert "error" not in fits
    assert fits["budget"]["fits"] is True


def test_run_over_budget_is_an_error_document(cli: Cli, tmp_path: Path) -> None:
    """Exit 3 from run: the error object carries the run id and the budget decision."""
    queue = tmp_path / "q.jsonl"
    write_queue(queue, OPENAI_LINES[:2])
    result = cli("run", queue, "--max-usd", "0.0001", "--simulate", "--output", "json", *FAST)
    assert result.code == 3
    error = document(result)["error"]
    assert (error["code"], error["kind"]) == (3, "over_budget")
    assert error["run_id"].startswith("run-")
    budget = error["budget"]
    assert (budget["refused_by"], budget["max_usd"], budget["mode"]) == (
        "max_usd",
        "0.0001",
        "batch",
    )
    assert float(budget["needed_usd"]) > 0.0001
    assert error["message"] in result.err


def test_a_ledger_budget_that_refuses_is_named(cli: Cli, tmp_path: Path) -> None:
    """Exit 3 when the ledger budget is spent: refused_by ledger, with the budget's name."""
    assert cli("budget", "set", "--usd", "0.0001", "--name", "tiny").code == 0
    queue = tmp_path / "q.jsonl"
    write_queue(queue, OPENAI_LINES[:2])
    argv = ["run", queue, "--max-usd", "5", "--budget", "tiny", "--simulate", "--output", "json"]
    result = cli(*argv, *FAST)
    assert result.code == 3, result.err
    budget = document(result)["error"]["budget"]
    assert (budget["refused_by"], budget["name"], budget["max_usd"]) == ("ledger", "tiny", "5")


def test_rate_card_errors_are_json(cli: Cli, tmp_path: Path) -> None:
    """Exit 4 (no card in force on the date) is a `rate_card` error object."""
    queue = tmp_path / "q.jsonl"
    write_queue(queue, [GPT | {"key": "a"}])
    result = cli("estimate", queue, "--as-of", "2020-01-01", "--output", "json")
    assert result.code == 4
    error = document(result)["error"]
    assert (error["code"], error["kind"]) == (4, "rate_card")
    assert "no openai rate card is in force on 2020-01-01" in error["message"]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["status", "run-000000000000"], id="status"),
        pytest.param(["budget", "show", "--ledger", "no/such.sqlite3"], id="budget-show"),
        pytest.param(["calibrate", "--ledger", "/no/such.sqlite3"], id="calibrate"),
        pytest.param(["ledger", "history", "--ledger", "postgresq://x/y"], id="history"),
    ],
)
def test_ledger_errors_are_json(cli: Cli, argv: list[str]) -> None:
    """Exit 5 is a `ledger` error object, whatever the command."""
    result = cli(*argv, "--output", "json")
    assert result.code == 5, result.err
    error = document(result)["error"]
    assert (error["code"], error["kind"]) == (5, "ledger")


def test_pending_incomplete_and_detached_runs_as_json(cli: Cli, tmp_path: Path) -> None:
    """Exit 6 (still running at --timeout) names the run; --detach prints the run id (exit 0);
    exit 7 is the run's summary with an `incomplete` error."""
    slow = scenario_file(
        tmp_path / "sc", "slow", name="slow-1s", time_scale=15000,
        pending_s=7200, running_s=7200, finalizing_s=600,
    )  # fmt: skip
    queue = tmp_path / "q.jsonl"
    write_queue(queue, OPENAI_LINES[:2])
    base = ["run", queue, "--max-usd", "5", "--simulate", slow, "--output", "json", *FAST]
    pending = cli(*base, "--timeout", "0", "--out", tmp_path / "o")
    assert pending.code == 6
    error = document(pending)["error"]
    assert (error["code"], error["kind"]) == (6, "pending")
    assert f"costguard collect {error['run_id']}" in error["message"]
    detached = document(cli(*base, "--detach", "--out", tmp_path / "o"))
    assert detached["run_id"] == error["run_id"]
    assert detached["status"] == "detached"

    refusals = scenario_file(tmp_path / "sc", "refusals")
    other = tmp_path / "r.jsonl"
    write_queue(other, OPENAI_LINES)
    argv = ["run", other, "--max-usd", "5", "--simulate", refusals, "--output", "json", *FAST]
    result = cli(*argv, "--out", tmp_path / "r")
    assert result.code == 7, result.err
    doc = document(result)
    assert doc["counts"]["refused"] > 0
    assert (doc["error"]["code"], doc["error"]["kind"]) == (7, "incomplete")
    assert "requests not ok (" in doc["error"]["message"]


def test_data_commands_print_typed_json(cli: Cli, tmp_path: Path) -> None:
    """cancel, budget set, runs, ledger migrate and export, simulate scenarios: JSON with null
    for nothing, numbers as numbers and booleans as booleans."""
    budget = document(cli("budget", "set", "--usd", "$1,500", "--name", "team", "--output", "json"))
    assert budget["budget"] == {"name": "team", "limit": "1500", "period": "month"}
    migrated = document(cli("ledger", "migrate", "--output", "json"))
    assert migrated["applied"] == []
    assert migrated["migrations"]
    exported = document(cli("ledger", "export", "--output", "json"))
    assert exported["charges"] == []
    scenarios = json.loads(cli("simulate", "scenarios", "--output", "json").out)
    last = {k: v for k, v in scenarios[-1].items() if k != "description"}
    assert last == {"name": "succeeded", "kind": "builtin", "path": None}
    queue = tmp_path / "q.jsonl"
    write_queue(queue, OPENAI_LINES[:1])
    ran = cli("run", queue, "--max-usd", "5", "--simulate", "--out", tmp_path / "o", *FAST)
    assert ran.code == 0, ran.err
    [listed] = json.loads(cli("runs", "--output", "json").out)
    assert (listed["mode"], listed["simulated"], listed["scenario"]) == ("batch", True, "succeeded")
    assert listed["requests"] == 1
    cancelled = document(cli("cancel", listed["run"], "--output", "json"))
    assert cancelled == {"run_id": listed["run"], "cancelled": [], "withdrawn": []}


def test_a_bare_exit_gets_a_generic_error_document(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-zero exit that printed nothing gets `{"error": {code, kind, message}}` from its
    code; one that printed its document already gets nothing more."""
    output.begin(["runs", "--output", "json"])
    assert output.exited(130) == 130
    error = json.loads(capsys.readouterr().out)["error"]
    assert (error["code"], error["kind"]) == (130, "interrupted")
    output.begin(["runs", "--output", "json"])
    output.emit({"done": True})
    assert output.exited(7) == 7
    assert json.loads(capsys.readouterr().out) == {"done": True}
    output.begin(["runs"])
    assert output.exited(6) == 6
    assert capsys.readouterr().out == ""
    output.end()


def test_an_unexpected_exception_is_an_internal_error_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug still raises (its traceback goes to stderr), after `{"error": {"code": 1, "kind":
    "internal"}}` on stdout."""
    from costguard.cli import app as app_module
    from costguard.cli import runs as runs_module

    def broken() -> Path:
        msg = "boom"
        raise RuntimeError(msg)

    monkeypatch.setattr(runs_module, "home_dir", broken)
    with pytest.raises(RuntimeError, match="boom"):
        app_module.run(["runs", "--output", "json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert (error["code"], error["kind"]) == (1, "internal")
    assert "RuntimeError: boom" in error["message"]


def test_costguard_errors_render_kind_and_details(capsys: pytest.CaptureFixture[str]) -> None:
    """`report` prints the human line and, with JSON asked for, the class's kind and details."""
    output.begin(["x", "--output", "json"])
    error = CostguardError("something odd", details={"run_id": "run-1"})
    assert output.report(error) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: something odd\n"
    assert json.loads(captured.out) == {
        "error": {"code": 1, "kind": "internal", "message": "something odd", "run_id": "run-1"}
    }
    output.end()
    assert output.report(error) == 1
    assert capsys.readouterr().out == ""  # what the last command line asked for is forgotten


@pytest.mark.parametrize(
    ("error", "code", "kind", "details"),
    [
        pytest.param(
            ProviderError("openai: 401 invalid key", rejected=True),
            8,
            "provider",
            {"rejected": True, "quota": False},
            id="provider",
        ),
        pytest.param(OutputError("out: disk full"), 9, "output", {}, id="output"),
        pytest.param(
            RunPendingError("still running", details={"run_id": "run-1"}),
            6,
            "pending",
            {"run_id": "run-1"},
            id="pending",
        ),
        pytest.param(RateCardError("no card"), 4, "rate_card", {}, id="rate-card"),
    ],
)
def test_each_exit_code_has_its_error_object(
    capsys: pytest.CaptureFixture[str],
    error: CostguardError,
    code: int,
    kind: str,
    details: dict[str, object],
) -> None:
    """Exits 4, 6, 8 and 9 are error objects with their code, kind and details, too."""
    output.begin(["run", "--output", "json"])
    try:
        assert output.report(error) == code
    finally:
        output.end()
    assert json.loads(capsys.readouterr().out) == {
        "error": {"code": code, "kind": kind, "message": str(error), **details}
    }
