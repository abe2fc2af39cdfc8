"""The Python API (`import costguard`), from a pipeline's point of view: `docs/python-api.md`
runs as written and prints what it shows; the figures and errors are the CLI's; reservations
are atomic, durable across processes, and never fail open; no public name can be shadowed."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from google import genai
from openai import OpenAI

import costguard
from sim_cli import costguard_command
from test_guide import guide_text

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "python-api.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
QUEUE_LINES = [
    {"key": "mug", "prompt": "Studio shot of a matte black mug", "model": "gpt-image-2"},
    {"key": "lamp", "prompt": "A brass desk lamp", "model": "gemini-3.1-flash-image", "size": "2K"},
    {"key": "tote", "prompt": "A linen tote", "model": "gpt-image-2", "quality": "high"},
]


def script(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` as a user's script: a fresh interpreter that imports only what it imports."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def cli_json(*args: str, cwd: Path) -> Any:
    done = subprocess.run(
        [*costguard_command(), *args, "--output", "json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


WINDOW = re.compile(r"\(\d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d UTC\)")
RESERVATION = re.compile(r"res-[0-9a-f]{16}")


def expected_output(text: str, got: str) -> bool:
    """`got` is `text`, but for what changes from run to run: a reservation id (the guide
    shows `res-…`) and the budget's window (the guide was run in one month, the test runs in
    any)."""
    return WINDOW.sub("(window)", RESERVATION.sub("res-…", got)) == WINDOW.sub("(window)", text)


# -- the guide ---------------------------------------------------------------------------------


def test_the_guides_examples_run_in_order_and_print_what_it_shows(tmp_path: Path) -> None:
    """Every ```python block runs as a user's script in one folder (its shell steps too), and
    prints exactly the ```text block that follows it. Afterwards `costguard budget show` has
    the pipeline's spend by owner, and not the rehearsal's."""
    blocks = FENCE.findall(guide_text(DOC))
    settled = dict(re.findall(r'settle\("([\w-]+)", "([\d.]+)"\)', guide_text(DOC)))
    ran = 0
    for index, (lang, body) in enumerate(blocks):
        if lang == "bash":
            for line in body.splitlines():
                assert line.startswith("costguard "), line
                done = subprocess.run(
                    [*costguard_command(), *line.split()[1:]],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert done.returncode == 0, done.stderr
        if lang != "python":
            continue
        done = script(body, tmp_path)
        assert done.returncode == 0, f"block {index}:\n{body}\n{done.stderr}"
        after = blocks[index + 1] if index + 1 < len(blocks) else ("", "")
        if after[0] == "text":
            assert expected_output(after[1], done.stdout), (
                f"block {index} printed:\n{done.stdout}\nthe guide shows:\n{after[1]}"
            )
        ran += 1
    assert ran >= 7
    shown = cli_json("budget", "show", cwd=tmp_path)
    team = next(b for b in shown["budgets"] if b["name"] == "team")
    owners = {o["owner"]: Decimal(o["spent"]) for o in team["owners"]}
    covers = re.search(r"settled \$([\d.]+): completed", guide_text(DOC))
    assert covers is not None
    assert owners == {
        "catalog-bot": Decimal(settled["catalog-2026-11-26"]),
        "covers": Decimal(covers[1]),
    }
    assert Decimal(team["spent"]) == sum(owners.values())
    assert Decimal(team["reserved"]) == 0


def test_a_users_script_imports_no_pytest_and_no_more_than_it_uses(tmp_path: Path) -> None:
    """`import costguard` loads the errors only; pricing a queue loads no simulator, no SDK
    and no pytest (the base install has none)."""
    done = script(
        textwrap.dedent(
            """
            import sys
            import costguard
            first = sorted(m for m in sys.modules if m.startswith("costguard"))
            costguard.estimate([{"key": "a", "prompt": "a fox", "model": "gpt-image-2"}])
            heavy = sorted(m for m in ("pytest", "respx", "openai", "google.genai",
                                       "costguard.simulator") if m in sys.modules)
            print(first, heavy)
            """
        ),
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['costguard', 'costguard.errors'] []"


# -- names -------------------------------------------------------------------------------------


def test_no_public_name_equals_a_submodule_and_none_is_shadowed_by_importing_them() -> None:
    """`costguard.run` is a function: after every submodule is imported, every public name is
    still what `from costguard import NAME` gave before."""
    submodules = {m.name for m in pkgutil.iter_modules(costguard.__path__)}
    clash = sorted(set(costguard.__all__) & submodules)
    assert not clash, f"public names that are also submodules: {clash}"
    before = {name: getattr(costguard, name) for name in costguard.__all__}
    for found in pkgutil.walk_packages(costguard.__path__, "costguard."):
        if found.name.endswith(("__main__", ".simulator.plugin")):  # runs the CLI; imports pytest
            continue
        importlib.import_module(found.name)
    after = {name: getattr(costguard, name) for name in costguard.__all__}
    assert after == before
    assert callable(costguard.run)
    assert callable(costguard.guard)
    assert (Path(costguard.__file__).parent / "py.typed").is_file()


# -- estimate and price ------------------------------------------------------------------------


@pytest.mark.parametrize("max_usd", [None, "5", "0.01"])
def test_to_json_is_what_estimate_output_json_prints(tmp_path: Path, max_usd: str | None) -> None:
    """Over the same queue file, with and without `--max-usd` (the CLI adds an `error` key
    only when it exits 3)."""
    queue = tmp_path / "q.jsonl"
    queue.write_text("".join(json.dumps(line) + "\n" for line in QUEUE_LINES))
    args = ["estimate", str(queue), "--as-of", "2026-11-26"]
    if max_usd is not None:
        args += ["--max-usd", max_usd]
    done = subprocess.run(
        [*costguard_command(), *args, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed = json.loads(done.stdout)
    printed.pop("error", None)
    estimate = costguard.estimate(queue, as_of="2026-11-26", max_usd=max_usd)
    assert estimate.as_dict() == printed
    assert done.returncode == (3 if max_usd == "0.01" else 0)
    assert estimate.fits is (None if max_usd is None else max_usd == "5")


def test_requests_in_memory_price_as_the_same_queue_file(tmp_path: Path) -> None:
    """ImageRequests, dicts and the file give the same figures; only `queue` differs."""
    queue = tmp_path / "q.jsonl"
    queue.write_text("".join(json.dumps(line) + "\n" for line in QUEUE_LINES))
    from_file = costguard.estimate(queue, as_of="2026-11-26")
    from_dicts = costguard.estimate(QUEUE_LINES, as_of="2026-11-26")
    from_objects = costguard.estimate(
        [costguard.ImageRequest(**line) for line in QUEUE_LINES], as_of="2026-11-26"
    )
    for other in (from_dicts, from_objects):
        assert (other.batch, other.sync, other.groups) == (
            from_file.batch,
            from_file.sync,
            from_file.groups,
        )
        assert other.queue == "<requests>"
    assert from_file.max == from_file.batch.max  # type: ignore[union-attr]
    assert from_file.requests == 3
    assert from_file.rate_cards == ("gemini/2026-11-26", "openai/2026-11-26")


def test_bad_requests_raise_the_clis_errors_with_position_and_field() -> None:
    with pytest.raises(costguard.QueueError) as caught:
        costguard.estimate(
            [
                {"key": "a", "prompt": "a fox", "model": "gpt-image-2"},
                {"key": "a", "prompt": "a fox"},
                {"key": "c", "prompt": "an owl", "model": "gpt-image-2", "quality": "ultra"},
            ]
        )
    exc = caught.value
    assert (exc.file, exc.line, exc.exit_code, exc.kind) == ("<requests>", 2, 2, "queue")
    assert len(exc.errors) == 2
    assert exc.errors[1].startswith("<requests>:3: quality:")
    with pytest.raises(costguard.UsageError, match="no such file"):
        costguard.estimate("a fox on a hill")  # a prompt where a queue was meant
    with pytest.raises(costguard.UsageError, match="not one request"):
        costguard.estimate({"key": "a", "prompt": "a fox"})  # type: ignore[arg-type]
    with pytest.raises(costguard.UsageError, match=r"<requests>:1: .*not int"):
        costguard.estimate([3])  # type: ignore[list-item]
    with pytest.raises(costguard.UsageError, match="mode"):
        costguard.estimate(QUEUE_LINES, mode="standard")  # type: ignore[arg-type]
    with pytest.raises(costguard.UsageError, match="max_usd"):
        costguard.estimate(QUEUE_LINES, max_usd="-1")


def test_price_is_the_prices_commands_figure_with_its_sources() -> None:
    rows = {
        (r["size"], r["quality"]): r
        for r in cli_json("prices", "--model", "gpt-image-2", "--as-of", "2026-11-26", cwd=ROOT)
    }
    for quality in ("low", "medium", "high"):
        for mode in ("batch", "sync"):
            p = costguard.price(
                "gpt-image-2", size="1024x1024", quality=quality, mode=mode, as_of="2026-11-26"
            )
            assert p.image_usd == Decimal(rows["1024x1024", quality][mode])
            assert p.expected_usd <= p.max_usd
    p = costguard.price("nano-banana-2", as_of="2026-11-26", prompt="a fox " * 100)
    assert (p.model, p.size, p.provider) == ("gemini-3.1-flash-image", "1K", "gemini")
    assert p.max_usd > p.expected_usd > p.image_usd  # thinking and prompt allowances
    assert p.assumptions
    assert all(s.startswith("http") and "checked 20" in s for s in p.sources)
    with pytest.raises(costguard.ModelUnavailableError):
        costguard.price("gpt-image-9")
    with pytest.raises(costguard.UsageError, match="quality"):
        costguard.price("gpt-image-2", quality="ultra")


def test_actual_cost_prices_the_sdks_own_usage_objects_as_runs_do() -> None:
    """From a sync answer through each SDK against the simulator: the SDK object, its JSON
    and costguard's own pricing of the same answer agree."""
    from costguard.api.setup import load_rate_book
    from costguard.pricing.engine import usage_cost
    from costguard.providers import gemini as gemini_provider

    with costguard.simulate():
        image = OpenAI(api_key="sk-test").images.generate(
            model="gpt-image-2", prompt="a fox", size="1024x1024", quality="low"
        )
        client = genai.Client(api_key="test")
        content = client.models.generate_content(model="gemini-3.1-flash-image", contents="a fox")
    from_object = costguard.actual_cost("gpt-image-2", image.usage, quality="low", mode="sync")
    from_json = costguard.actual_cost(
        "gpt-image-2", image.usage.model_dump(), quality="low", mode="sync"
    )
    assert from_object == from_json > 0
    assert from_object < costguard.price("gpt-image-2", quality="low", mode="sync").max_usd * 2
    metadata = content.usage_metadata
    wire = content.model_dump(mode="json", by_alias=True, exclude_none=True)["usageMetadata"]
    got = costguard.actual_cost("gemini-3.1-flash-image", metadata, mode="sync")
    assert got == costguard.actual_cost("gemini-3.1-flash-image", wire, mode="sync") > 0
    counted = gemini_provider.usage_of(wire)
    assert counted is not None
    card = load_rate_book(None).resolve(
        "gemini-3.1-flash-image", costguard.price("nano-banana-2").as_of
    )
    assert got == usage_cost(card.model, "standard", counted, size="1K", quality=None)
    with pytest.raises(costguard.UsageError, match="usage"):
        costguard.actual_cost("gpt-image-2", "lots")


# -- the ledger --------------------------------------------------------------------------------


def test_reservations_are_atomic_across_processes_and_settled_from_another(
    tmp_path: Path, ledger_location: str
) -> None:
    """8 processes ask for $1 each of a $3 budget at once, on SQLite and on PostgreSQL:
    exactly 3 are admitted. Another process settles one and releases another by id; the
    budget shows exactly that."""
    with costguard.Ledger.open(ledger_location) as ledger:
        ledger.set_budget("team", 3)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"""
import costguard
with costguard.Ledger.open({ledger_location!r}) as ledger:
    try:
        hold = ledger.budget("team").reserve("1", run="r{n}", owner="p{n}")
        print("admitted", hold.id)
    except costguard.BudgetExceededError as exc:
        print("refused", exc.kind)
""",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    answers = [p.communicate(timeout=120)[0].split() for p in procs]
    admitted = sorted(a[1] for a in answers if a[0] == "admitted")
    assert len(admitted) == 3
    assert sum(a == ["refused", "over_budget"] for a in answers) == 5
    code = f"""
import costguard
with costguard.Ledger.open({ledger_location!r}) as ledger:
    print(ledger.settle("{admitted[0]}", "0.75").status)
    print(ledger.release("{admitted[1]}").status)
    print(ledger.settle("{admitted[0]}", "0.75").spent)
"""
    done = script(code, tmp_path)
    assert done.stdout.split() == ["completed", "released", "0.75"], done.stderr
    with costguard.Ledger.open(ledger_location) as ledger:
        status = ledger.budget("team").status()
        assert (status.spent, status.reserved, status.open_runs) == (
            Decimal("0.75"),
            Decimal(1),
            1,
        )
        with pytest.raises(costguard.LedgerError, match="already recorded"):
            ledger.settle(admitted[0], "0.80")
        assert ledger.reservation(admitted[2]).open


def test_the_same_run_id_never_holds_twice_and_a_refusal_holds_nothing() -> None:
    with costguard.Ledger.open() as ledger:
        team = ledger.set_budget("team", "2.00")
        first = team.reserve("1.50", run="nightly")
        again = team.reserve("1.50", run="nightly")
        assert (first.id, again.id, team.status().reserved) == (
            "nightly",
            "nightly",
            Decimal("1.5"),
        )
        with pytest.raises(costguard.BudgetExceededError) as caught:
            team.reserve("0.60", owner="late")
        assert "short by $0.10" in str(caught.value)
        assert caught.value.details["shortfall_usd"] == "0.10"
        assert team.status().reserved == Decimal("1.5")
        with pytest.raises(costguard.BudgetExceededError, match=r"max_usd \$0\.30"):
            team.reserve("0.40", max_usd="0.30")


def test_a_mistyped_budget_or_ledger_never_runs_without_a_limit(tmp_path: Path) -> None:
    with costguard.Ledger.open() as ledger:
        ledger.set_budget("team", 5)
        with pytest.raises(costguard.LedgerError, match=r"'teem' \(budgets set: 'team'\)"):
            ledger.budget("teem")
    for location in ("postgres:/nohost", "ledgr.sqlite3", "sqlite:///x.db"):
        with pytest.raises(costguard.LedgerError):
            costguard.Ledger.open(location)
    assert not (tmp_path / "ledgr.sqlite3").exists()


def test_a_reservation_block_releases_on_error_warns_when_left_open_and_keep_says_meant() -> None:
    with costguard.Ledger.open() as ledger:
        team = ledger.set_budget("team", 5)
        with pytest.raises(RuntimeError), team.reserve(1) as failed:
            raise RuntimeError("the pipeline broke before creating its batch")
        assert ledger.reservation(failed.id).status == "released"
        holding = r"still open, holding \$1\.00"
        with pytest.warns(costguard.ReservationWarning, match=holding), team.reserve(1) as left:
            pass
        assert ledger.reservation(left.id).open
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with contextlib.suppress(RuntimeError), team.reserve(1) as kept:
                kept.keep(batch="batch_123")
                raise RuntimeError("after the batch was created")
        assert ledger.reservation(kept.id).open  # sent work keeps its reservation
        with team.reserve(1) as settled:
            settled.settle("0.40")
        assert (settled.status, settled.spent) == ("completed", Decimal("0.40"))
        assert team.status().reserved == 2


def test_a_rehearsal_reservation_decides_as_real_but_never_counts() -> None:
    with costguard.Ledger.open() as ledger:
        team = ledger.set_budget("team", 1)
        with pytest.raises(costguard.BudgetExceededError):
            team.reserve(2, rehearsal=True)
        hold = team.reserve("0.80", rehearsal=True)
        ledger.settle(hold.id, "0.70")
        assert (team.status().spent, team.status().reserved) == (0, 0)


# -- run ---------------------------------------------------------------------------------------


def test_run_rehearses_the_whole_cycle_resumes_and_never_charges_the_budget(
    tmp_path: Path,
) -> None:
    requests = [
        costguard.ImageRequest(key=f"t{n}", prompt=f"thumb {n}", model="gpt-image-2", quality="low")
        for n in range(3)
    ]
    with costguard.Ledger.open() as ledger:
        ledger.set_budget("team", 1)
    messages: list[str] = []
    out = tmp_path / "out"
    summary = costguard.run(
        requests, max_usd=1, budget="team", out=out, simulate=True, on_message=messages.append
    )
    assert summary.counts == {"ok": 3}
    assert 0 < summary.actual <= summary.estimate_max
    assert sorted(p.name for p in out.glob("t*.png")) == ["t0.png", "t1.png", "t2.png"]
    assert summary.report == out / "report.html"
    again = costguard.run(requests, max_usd=1, budget="team", out=out, simulate=True)
    assert (again.run_id, again.counts, again.actual) == (summary.run_id, {"ok": 3}, summary.actual)
    with costguard.Ledger.open() as ledger:
        status = ledger.budget("team").status()
        with pytest.raises(costguard.LedgerError, match="admitted by `costguard run`"):
            ledger.settle(summary.run_id, "0.01")  # a run settles itself: never twice
        with pytest.raises(costguard.LedgerError, match="already closed"):
            ledger.budget("team").reserve(1, run=summary.run_id)
    assert (status.spent, status.reserved) == (0, 0)
    queues = list((tmp_path / "costguard-home" / "queues").glob("*.jsonl"))
    assert len(queues) == 1


def test_run_refuses_before_sending_anything(tmp_path: Path) -> None:
    requests = [{"key": "a", "prompt": "a fox", "model": "gpt-image-2", "quality": "high"}]
    with pytest.raises(costguard.BudgetExceededError):
        costguard.run(requests, max_usd="0.01", simulate=True, out=tmp_path / "o")
    with pytest.raises(costguard.LedgerError, match="no budget named 'teem'"):
        costguard.run(requests, max_usd=1, budget="teem", simulate=True, out=tmp_path / "o")
    with pytest.raises(costguard.UsageError, match="no openai API key"):
        costguard.run(requests, max_usd=1, out=tmp_path / "o")
    with costguard.simulate() as sim, pytest.raises(costguard.UsageError, match="simulate=True"):
        costguard.run(requests, max_usd=1, out=tmp_path / "o")
    assert sim.calls.count("openai.batches.create") == 0
    with pytest.raises(costguard.UsageError, match="max_enqueued_tokens"):
        costguard.run(requests, max_usd=1, simulate=True, max_enqueued_tokens={"gpt-image-2": 0})
    assert not (tmp_path / "o").exists()
