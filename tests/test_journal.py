"""The run journal and output folder: file names, atomic writes, torn manifests, locks, markers."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import pytest

from costguard.execution.files import write_atomic
from costguard.execution.journal import Journal, JournalError, Part
from costguard.execution.outputs import Outputs, safe_name
from costguard.execution.rundir import RunBusyError, RunDir
from costguard.providers.base import JobStatus

SAFE = re.compile(r"[A-Za-z0-9._-]+")


# --- safe_name ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("sku-1001-hero", "sku-1001-hero"),
        ("thumb_001.v2", "thumb_001.v2"),
        ("a", "a"),
    ],
    ids=["dashes", "underscore-dot", "one-char"],
)
def test_safe_lowercase_keys_are_their_own_name(key: str, name: str) -> None:
    """A key of lowercase letters, digits, `.`, `_` and `-` is used as the file name unchanged."""
    assert safe_name(key) == name


@pytest.mark.parametrize(
    ("key", "cleaned"),
    [
        ("Cover #1/Spring", "Cover__1_Spring"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("SKU-1", "SKU-1"),
        ("café", "caf_"),
        (".hidden", "hidden"),
        ("...", "key"),
        ("a b", "a_b"),
        ("x" * 150, "x" * 100),
        ("tab\there", "tab_here"),
        ("aux", "aux"),
        ("con.png", "con_png"),
        ("lpt1.tar.gz", "lpt1_tar.gz"),
        ("nul", "nul"),
    ],
    ids=["slash-hash", "traversal", "uppercase", "non-ascii", "leading-dot", "dots", "space",
         "long", "tab", "windows-aux", "windows-con-ext", "windows-lpt1", "windows-nul"],
)  # fmt: skip
def test_unsafe_or_uppercase_keys_get_a_cleaned_name_and_a_hash(key: str, cleaned: str) -> None:
    """Other keys are cleaned to [A-Za-z0-9._-], cut to 100 chars, and get 8 hex of their sha256."""
    name = safe_name(key)
    assert re.fullmatch(re.escape(cleaned) + r"-[0-9a-f]{8}", name), name
    assert SAFE.fullmatch(name)
    assert not name.startswith(".")
    assert "/" not in name


def test_distinct_keys_never_share_a_file_name() -> None:
    """Property: many random distinct keys get distinct, safe, case-insensitively distinct names."""
    rng = random.Random(20261124)
    alphabet = 'abcABC019-_. /\\#é\t:*?"<>|ä'
    keys: set[str] = set()
    while len(keys) < 20_000:
        keys.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
    keys |= {k.upper() for k in list(keys)[:2000]} | {k.lower() for k in list(keys)[:2000]}
    names = {key: safe_name(key) for key in keys}
    assert len(set(names.values())) == len(keys)
    assert len({n.lower() for n in names.values()}) == len(keys)
    for name in names.values():
        assert SAFE.fullmatch(name)
        assert name not in (".", "..")
        assert not name.startswith(".")
        assert len(name) <= 109


def test_a_key_spelled_like_a_hashed_name_gets_its_own_name() -> None:
    """A key equal to another key's cleaned-and-hashed name must not take that name."""
    twin = safe_name("a b")
    assert safe_name(twin) != safe_name("a b")


# --- write_atomic ---------------------------------------------------------------------------


def test_write_atomic_replaces_whole_files_and_leaves_no_temp(tmp_path: Path) -> None:
    """write_atomic creates parents, replaces the old content whole, and leaves no temp file."""
    target = tmp_path / "a" / "b" / "file.json"
    write_atomic(target, b"first")
    inode = target.stat().st_ino
    write_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert target.stat().st_ino != inode, "replaced by rename, not rewritten in place"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_write_atomic_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails before the rename leaves the old content and no temp file behind."""
    target = tmp_path / "journal.json"
    write_atomic(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["journal.json"]


# --- the journal --------------------------------------------------------------------------


def sample_journal(**changes: object) -> Journal:
    """A small journal with one part."""
    journal = Journal(
        run_id="run-000000000001",
        created="2026-11-24T00:00:00+00:00",
        queue="/q.jsonl",
        queue_sha256="0" * 64,
        queue_format="costguard",
        mode="batch",
        as_of="2026-11-01",
        out="/out",
        options={"retry_refused": False},
        estimate={"requests": 1, "images": 1, "expected_usd": "0.1", "max_usd": "0.2"},
        rate_cards=["openai/2026-10-23"],
        parts=[Part("openai-gpt-image-2-generations-1", "openai", "gpt-image-2", "generations", 1,
                    tag="costguard:run-000000000001:openai-gpt-image-2-generations-1")],
    )  # fmt: skip
    for name, value in changes.items():
        setattr(journal, name, value)
    return journal


def test_journal_round_trips_and_a_corrupt_one_is_a_clear_error(tmp_path: Path) -> None:
    """A saved journal loads back equal; an unreadable one raises JournalError naming the file."""
    rundir = RunDir(tmp_path / "runs" / "run-000000000001")
    assert not rundir.exists
    journal = sample_journal(status="submitted")
    journal.parts[0].state = "submitting"
    rundir.save(journal)
    assert rundir.exists
    assert asdict(rundir.load()) == asdict(journal)
    rundir.journal_path.write_text('{"run_id": "run-0000', encoding="utf-8")
    with pytest.raises(JournalError, match=r"journal\.json: unreadable run journal"):
        rundir.load()


def test_transitions_save_themselves_and_a_reload_sees_each_step(tmp_path: Path) -> None:
    """Every named transition is on disk when it returns: a fresh load sees the new state."""
    rundir = RunDir(tmp_path / "runs" / "run-000000000001")
    journal = sample_journal()
    rundir.save(journal)
    part = journal.parts[0]

    journal.admit("fits")
    saved = rundir.load()
    assert (saved.status, saved.admission) == ("admitted", "fits")
    journal.submitting(part)
    assert rundir.load().parts[0].state == "submitting"
    journal.submitted(part, "batch_1", "file_1")
    saved = rundir.load()
    assert (saved.status, saved.parts[0].state, saved.parts[0].job_id) == (
        "submitted",
        "submitted",
        "batch_1",
    )
    journal.observe({part.id: JobStatus("running", "in_progress", 1, 0)})
    assert rundir.load().parts[0].job_state == "in_progress"
    journal.observe({part.id: JobStatus("succeeded", "completed", 1, 1)})
    assert rundir.load().parts[0].job_state == "terminal:succeeded"
    journal.collected(part, Decimal("0.25"))
    journal.complete()
    saved = rundir.load()
    assert (saved.status, saved.parts[0].state, saved.parts[0].cost_usd) == (
        "collected",
        "collected",
        "0.25",
    )


def test_a_job_found_after_a_crash_is_journaled_as_submitted(tmp_path: Path) -> None:
    """`found` takes a part left `submitting` by a crash to `submitted` with the found job."""
    rundir = RunDir(tmp_path / "runs" / "run-000000000001")
    journal = sample_journal(status="admitted")
    journal.parts[0].state = "submitting"
    rundir.save(journal)
    loaded = rundir.load()
    loaded.found(loaded.parts[0], "batch_9")
    assert (rundir.load().parts[0].state, rundir.load().parts[0].job_id) == ("submitted", "batch_9")


@pytest.mark.parametrize(
    ("status", "state", "step", "message"),
    [
        ("planned", "planned", "submitted", "cannot go from planned to submitted"),
        ("admitted", "planned", "collected", "cannot be collected while planned"),
        ("submitted", "submitted", "collected", "cannot be collected while submitted"),
        ("admitted", "collected", "submitting", "cannot go from collected to submitting"),
        ("submitted", "submitted", "admit", "cannot go from submitted to admitted"),
        ("admitted", "submitted", "complete", "cannot complete while parts are not collected"),
    ],
    ids=["submit-unplanned", "collect-unsubmitted", "collect-running-job", "resubmit-collected",
         "admit-twice", "complete-early"],
)  # fmt: skip
def test_a_transition_from_the_wrong_state_is_refused_and_nothing_is_saved(
    tmp_path: Path, status: str, state: str, step: str, message: str
) -> None:
    """A step the journal's state does not allow raises JournalError; nothing is saved."""
    rundir = RunDir(tmp_path / "runs" / "run-000000000001")
    journal = sample_journal(status=status)
    journal.parts[0].state = state
    rundir.save(journal)
    before = rundir.journal_path.read_bytes()
    part = journal.parts[0]
    steps = {
        "submitted": lambda: journal.submitted(part, "batch_1", None),
        "collected": lambda: journal.collected(part, Decimal(0)),
        "submitting": lambda: journal.submitting(part),
        "admit": lambda: journal.admit("fits"),
        "complete": journal.complete,
    }
    with pytest.raises(JournalError, match=message):
        steps[step]()
    assert rundir.journal_path.read_bytes() == before


def test_a_journal_not_bound_to_a_run_folder_refuses_to_move() -> None:
    """A transition on a journal never loaded or saved has nowhere to persist: it raises."""
    with pytest.raises(JournalError, match="not bound to a run folder"):
        sample_journal().admit("fits")


# --- the manifest -------------------------------------------------------------------------


def line(key: str, part: str = "p1", cost: str = "0.01") -> dict[str, object]:
    """A manifest line."""
    return {"key": key, "status": "ok", "files": [], "cost_usd": cost, "part": part}


@pytest.mark.parametrize(
    "torn",
    [b'{"key":"c","status":"o', b'{"key":"c","status":"ok","files":[],"cost_usd":"1","part":"p1"}'],
    ids=["cut-mid-json", "complete-json-no-newline"],
)
def test_a_torn_last_manifest_line_is_dropped(tmp_path: Path, torn: bytes) -> None:
    """Reopening drops a last line without its newline, keeps the rest, and appends after them."""
    out = tmp_path / "out"
    outputs = Outputs(out)
    outputs.open("run-1 t")
    assert outputs.keys("p1") == set()
    outputs.record(line("a"))
    outputs.record(line("b", cost="0.02"))
    outputs.close()
    good = outputs.manifest_path.read_bytes()
    with outputs.manifest_path.open("ab") as handle:
        handle.write(torn)
    reopened = Outputs(out)
    reopened.open("run-1 t")
    assert reopened.keys("p1") == {"a", "b"}
    assert reopened.keys("p2") == set()
    assert outputs.manifest_path.read_bytes() == good
    reopened.record(line("c", cost="0.03"))
    reopened.close()
    assert [json.loads(raw)["key"] for raw in outputs.manifest_path.read_bytes().splitlines()] == [
        "a", "b", "c",
    ]  # fmt: skip
    assert str(reopened.part_cost("p1")) == "0.06"


def test_part_cost_is_kept_as_lines_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part's cost is summed as its lines are recorded, never by reading the manifest again
    (which made collecting N parts read the manifest N times)."""
    outputs = Outputs(tmp_path)
    outputs.open("run-1 t")
    for i in range(3):
        outputs.record(line(f"k{i}", cost="0.01", part="p2"))
    outputs.record(line("other", cost="5", part="p3"))

    def reread(self: Outputs) -> None:
        raise AssertionError("part_cost read the manifest again")

    monkeypatch.setattr(Outputs, "lines", reread)
    assert str(outputs.part_cost("p2")) == "0.03"
    assert str(outputs.part_cost("p3")) == "5"
    assert str(outputs.part_cost("never")) == "0"
    outputs.close()


def test_images_are_named_by_key_and_never_rewritten(tmp_path: Path) -> None:
    """Images go to `<safe key>.<ext>` (`-<i>` for several); an existing file is left untouched:
    the same bytes are that image (written before a crash), other bytes are someone else's
    file, and the image goes beside it, reported under its own name."""
    outputs = Outputs(tmp_path)
    outputs.open("run-1 t")
    assert outputs.write_images("Hero", 1, [(b"png-1", "image/png")]) == [
        f"{safe_name('Hero')}.png"
    ]
    names = outputs.write_images("pair", 2, [(b"a", "image/jpeg"), (b"b", "image/webp")])
    assert names == ["pair-1.jpg", "pair-2.webp"]
    first = tmp_path / "pair-1.jpg"
    stamp = (first.stat().st_ino, first.stat().st_mtime_ns)
    assert outputs.write_images("pair", 2, [(b"a", "image/jpeg"), (b"b", "image/webp")]) == names
    assert outputs.write_images("pair", 2, [(b"other", "image/jpeg"), (b"b", "image/webp")]) == [
        "pair-1.costguard-2.jpg",
        "pair-2.webp",
    ]
    assert first.read_bytes() == b"a"
    assert (tmp_path / "pair-1.costguard-2.jpg").read_bytes() == b"other"
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == stamp
    assert outputs.write_images("odd", 1, [(b"?", "image/x-unknown")]) == ["odd.bin"]
    outputs.close()


# --- the output folder's owner ------------------------------------------------------------


def test_out_folder_marker_refuses_another_runs_folder(tmp_path: Path) -> None:
    """A folder marked by one run is refused to any other; its own run may reopen it."""
    out = tmp_path / "out"
    first = Outputs(out)
    assert first.check("run-a t1") is False
    first.open("run-a t1")
    first.record(line("k"))
    first.close()
    assert (out / ".costguard-run").read_text(encoding="utf-8") == "run-a t1\n"
    assert Outputs(out).check("run-a t1") is True
    with pytest.raises(JournalError, match=r"holds the results of another run \(run-a t1\)"):
        Outputs(out).open("run-b t2")
    with pytest.raises(JournalError, match="another run"):
        Outputs(out).open("run-a t-other-creation")
    again = Outputs(out)
    again.open("run-a t1")
    assert again.keys("p1") == {"k"}
    again.close()


def test_out_folder_with_a_foreign_manifest_is_refused(tmp_path: Path) -> None:
    """A folder holding a manifest.jsonl but no marker is someone else's: refused, left intact."""
    (tmp_path / "manifest.jsonl").write_bytes(b'{"key":"x"}\n')
    with pytest.raises(JournalError, match=r"already has a manifest\.jsonl from elsewhere"):
        Outputs(tmp_path).open("run-a t1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]


# --- the run lock -------------------------------------------------------------------------

HOLDER = """
import sys
from pathlib import Path
from costguard.execution.rundir import RunDir
rundir = RunDir(Path(sys.argv[1]))
rundir.lock()
print("locked", flush=True)
sys.stdin.readline()
rundir.unlock()
"""


def test_a_run_lock_held_by_another_process_names_it(tmp_path: Path) -> None:
    """Locking a run another process holds fails at once naming its pid; free once it lets go."""
    path = tmp_path / "runs" / "run-1"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunBusyError, match=rf"run run-1 is being driven by pid {holder.pid}"):
            RunDir(path).lock()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    mine = RunDir(path)
    mine.lock()
    assert (path / "lock").read_text(encoding="utf-8") == str(os.getpid())
    with pytest.raises(RunBusyError):
        RunDir(path).lock()
    mine.unlock()


def test_discard_removes_only_an_empty_run_folder(tmp_path: Path) -> None:
    """discard() drops the lock and the folder, unless something else is in it."""
    empty = RunDir(tmp_path / "runs" / "empty")
    empty.lock()
    empty.discard()
    empty.unlock()
    assert not empty.path.exists()
    used = RunDir(tmp_path / "runs" / "used")
    used.lock()
    (used.path / "simulator.json").write_text("{}")
    used.discard()
    used.unlock()
    assert sorted(p.name for p in used.path.iterdir()) == ["simulator.json"]
