"""The `Simulator` (state, clock, scenarios and faces behind `handle()`) and `simulate()`.

`handle()` picks a face, matches its routes, injects flaky errors, asks the replayed recording
first and logs every call; `save()` / `load()` persist the whole state (see the package
docstring). The faces (`openai/`, `gemini/`), the replay and the mock transport are imported
lazily, inside the methods that use them (the Gemini face may be absent).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import re
import string
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costguard.simulator.core import (
    BlobStore,
    BodyLimit,
    CallLog,
    NotSimulatedError,
    Router,
    SimClock,
    SimRequest,
    SimResponse,
)
from costguard.simulator.face import Face, provider_of
from costguard.simulator.images import ImageSource
from costguard.simulator.records import STATE_FORMAT, JobRecord, SimulatorStateError, UploadRecord
from costguard.simulator.scenario import (
    SCENARIO_MARKER,
    Scenario,
    UnknownScenarioError,
    builtin_names,
    load_scenario,
)

if TYPE_CHECKING:
    from costguard.simulator.openai import OpenAIFace
    from costguard.simulator.recording.replay import Replay

_log = logging.getLogger("costguard.simulator")

ID_ALPHABET = string.ascii_letters + string.digits


def _gemini_face_class() -> type[Any] | None:
    """`GeminiFace`, or None where `costguard.simulator.gemini` cannot be imported (OpenAI only)."""
    try:
        gemini = importlib.import_module("costguard.simulator.gemini")
    except ModuleNotFoundError as exc:
        if exc.name == "costguard.simulator.gemini":
            return None
        raise
    face: type[Any] | None = getattr(gemini, "GeminiFace", None)
    return face


def _recording_of(scenario: str | os.PathLike[str] | Scenario | None) -> Path | None:
    """The recording a scenario argument names (a folder with `recording.yaml`), else None."""
    if scenario is None or isinstance(scenario, Scenario):
        return None
    if not isinstance(scenario, os.PathLike) and scenario in builtin_names():
        return None
    from costguard.simulator.recording.format import manifest_path

    return manifest_path(scenario)


def _blob_dir(path: Path) -> Path:
    return path.with_name(path.name + ".blobs")


class Simulator:
    """The simulated providers: state, clock, scenarios and faces behind `handle()`."""

    def __init__(
        self,
        scenario: str | Path | Scenario | None = None,
        *,
        api_keys: Iterable[str] | None = None,
        time_scale: float | None = None,
        seed: str = "costguard",
        clock: SimClock | None = None,
    ) -> None:
        """Build a simulator.

        Args:
            scenario: Default scenario: a built-in name, a YAML path or a `Scenario`
                (`succeeded` when None). Jobs may pick another one each (see `scenario_for`).
                A recording folder (`costguard simulate record`) is replayed statefully
                (`self.replay`); its `fallback` scenario answers what it does not cover.
            api_keys: Accept only these keys (anything else is a wrong key); None accepts any
                non-empty key.
            time_scale: Simulated seconds per wall second (default: the scenario's); 0 stops
                the clock, so only `advance()` moves it (deterministic tests).
            seed: Seed of the deterministic ids.
            clock: A clock to continue (used by `load`).
        """
        self._lock = threading.RLock()
        self._scenarios: dict[str, Scenario] = {}
        recording = _recording_of(scenario)
        if recording is not None:
            from costguard.simulator.recording.format import load_manifest

            recording, manifest = load_manifest(recording)
            beside = recording / manifest.fallback  # a YAML file kept with the recording
            scenario = str(beside) if beside.is_file() else manifest.fallback
        self.scenario = self._default_scenario(scenario)
        if clock is None:
            scale = self.scenario.time_scale if time_scale is None else time_scale
            clock = SimClock(time_scale=scale)
        self.clock = clock
        self.router = Router()
        self.calls = CallLog()
        self.blobs = BlobStore()
        self.images = ImageSource()
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.seed = seed
        self.jobs: list[JobRecord] = []
        self.uploads: list[UploadRecord] = []
        self.unmatched: list[str] = []
        """`costguard-sim: POST /v1/foo not simulated` for each request no route matched."""
        self.failures: list[str] = []
        """One line per request the simulator itself failed on (answered 500; a bug)."""
        self.autosave: Path | None = None
        """When set, `handle` saves the state there after every request."""
        self._ids = 0
        self._counters: Counter[str] = Counter()
        self._foreign_states: dict[str, dict[str, Any]] = {}
        self.faces: dict[str, Face] = {}

        from costguard.simulator.openai import OpenAIFace

        self._add_face(OpenAIFace(self))
        gemini = _gemini_face_class()
        if gemini is not None:
            self._add_face(gemini(self))
        self.replay: Replay | None = None
        """The recording being replayed, when the scenario is a recording folder."""
        if recording is not None:
            self.attach_replay(recording)

    def attach_replay(self, path: str | os.PathLike[str]) -> Replay:
        """Replay the recording at `path` in front of the faces (see `replay.py`)."""
        from costguard.simulator.recording.replay import Replay

        self.replay = Replay.load(Path(path), self)
        return self.replay

    # -- faces -----------------------------------------------------------------------------

    def _add_face(self, face: Face) -> None:
        self.faces[face.name] = face
        face.register(self.router)

    @property
    def openai(self) -> OpenAIFace:
        """The OpenAI face (its files and batches, for tests that look inside)."""
        from costguard.simulator.openai import OpenAIFace

        face = self.faces["openai"]
        assert isinstance(face, OpenAIFace)
        return face

    @property
    def gemini(self) -> Any | None:
        """The Gemini face, or None while `costguard.simulator.gemini` does not exist."""
        return self.faces.get("gemini")

    # -- scenarios -------------------------------------------------------------------------

    def _default_scenario(self, scenario: str | Path | Scenario | None) -> Scenario:
        if isinstance(scenario, Scenario):
            resolved = scenario
        else:
            resolved = load_scenario(str(scenario) if scenario is not None else "succeeded")
        self.register_scenario(resolved)
        return resolved

    def register_scenario(self, scenario: Scenario) -> None:
        """Make `scenario` selectable per job by its name (besides the built-ins)."""
        with self._lock:
            self._scenarios[scenario.name] = scenario

    def scenario_named(self, name: str) -> Scenario:
        """The scenario called `name`: a registered one, else a built-in (cached).

        Request data never names a file path: only registered and built-in names resolve.

        Raises:
            UnknownScenarioError: with the list of names that exist.
        """
        with self._lock:
            found = self._scenarios.get(name)
            if found is not None:
                return found
            builtins = builtin_names()
            if name not in builtins:
                known = ", ".join(sorted({*builtins, *self._scenarios}))
                msg = f"costguard-sim: unknown scenario {name!r}; known scenarios: {known}"
                raise UnknownScenarioError(msg)
            loaded = load_scenario(name)
            self._scenarios[name] = loaded
            return loaded

    def scenario_for(self, text_or_name: str | None) -> Scenario:
        """The scenario a job asked for in free text (a Gemini display name).

        `cg_scenario=NAME` anywhere in the text selects NAME (strictly: an unknown NAME raises
        `UnknownScenarioError`); text without it, or None, gets the default scenario.
        OpenAI's `metadata={"cg_scenario": NAME}` goes through `scenario_named`.
        """
        if not text_or_name:
            return self.scenario
        found = SCENARIO_MARKER.search(text_or_name)
        return self.scenario_named(found.group(1)) if found else self.scenario

    # -- helpers for faces -------------------------------------------------------------------

    def now(self) -> float:
        """Simulated time, epoch seconds."""
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (tests use this instead of sleeping)."""
        self.clock.advance(seconds)

    def key_allowed(self, key: str | None) -> bool:
        """Whether `key` may call: any non-empty key, unless `api_keys` restricts them."""
        if not key:
            return False
        return self.api_keys is None or key in self.api_keys

    def new_id(self, length: int = 24, alphabet: str = ID_ALPHABET) -> str:
        """A fresh id of `length` (<= 64) characters from `alphabet`, deterministic per seed."""
        with self._lock:
            self._ids += 1
            number = self._ids
        digest = hashlib.sha512(f"{self.seed}:{number}".encode()).digest()
        return "".join(alphabet[byte % len(alphabet)] for byte in digest[:length])

    def next_index(self, counter: str) -> int:
        """The next 0-based value of a named per-simulator counter."""
        with self._lock:
            value = self._counters[counter]
            self._counters[counter] = value + 1
            return value

    def record_job(self, provider: str, job_id: str, scenario: str, requests: int) -> None:
        """Note a created batch job."""
        with self._lock:
            self.jobs.append(JobRecord(provider, job_id, scenario, requests))

    def record_upload(
        self, provider: str, file_id: str, filename: str, nbytes: int, purpose: str
    ) -> None:
        """Note an uploaded file."""
        with self._lock:
            self.uploads.append(UploadRecord(provider, file_id, filename, nbytes, purpose))

    # -- the request path ------------------------------------------------------------------

    def body_limit(self, request: SimRequest) -> BodyLimit | None:
        """The body limit of the route `request` goes to (asked before its body is read)."""
        provider = provider_of(request)
        face = self.faces.get(provider)
        found = self.router.match(request, prefix=f"{provider}.")
        hook = getattr(face, "body_limit", None)
        if found is None or hook is None:
            return None
        with self._lock:
            limit: BodyLimit | None = hook(request, found[0].name)
        return limit

    def refuse_body(self, request: SimRequest, limit: BodyLimit) -> SimResponse:
        """Log and answer a request refused for its body size (its body was never read)."""
        provider = provider_of(request)
        found = self.router.match(request, prefix=f"{provider}.")
        with self._lock:
            self.calls.record(
                found[0].name if found else "unmatched", request, limit.refusal.status
            )
        return limit.refusal

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one request as the provider would (see the module docstring)."""
        with self._lock:
            response = self._dispatch(request)
            if self.autosave is not None:
                self.save(self.autosave)
            route = self.calls.calls[-1][0] if self.calls.calls else ""
            delay = self.scenario.latency_s.get(route, 0.0)
        if delay > 0:
            time.sleep(delay)
        return response

    def _dispatch(self, request: SimRequest) -> SimResponse:
        provider = provider_of(request)
        face = self.faces.get(provider)
        found = self.router.match(request, prefix=f"{provider}.")
        if face is None or found is None:
            message = f"costguard-sim: {request.method} {request.path} not simulated"
            self.unmatched.append(message)
            missing = face.error(404, message) if face else _plain_error(404, message)
            self.calls.record("unmatched", request, missing.status)
            return missing
        route, match = found
        try:
            response = face.authenticate(request, route.name) or self._flaky(
                face, request, route.name, match
            )
            if response is None and self.replay is not None:
                response = self.replay.answer(route, request, match)
            if response is None:
                response = route.handler(request, match)
        except UnknownScenarioError as exc:
            response = face.error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in a face answers 500, loudly
            message = f"costguard-sim: internal error in {route.name}: {type(exc).__name__}: {exc}"
            _log.exception("%s", message)
            self.failures.append(message)
            response = face.error(500, message)
            response.headers["x-should-retry"] = "false"
        self.calls.record(route.name, request, response.status)
        return response

    def _flaky(
        self, face: Face, request: SimRequest, route: str, match: re.Match[str]
    ) -> SimResponse | None:
        scenario = self.scenario
        hook = getattr(face, "request_scenario", None)
        if hook is not None:
            try:
                scenario = hook(request, route, match) or self.scenario
            except UnknownScenarioError:
                return None  # the handler reports it properly
        every = scenario.flaky.every
        if every <= 0:
            return None
        count = self.next_index(f"flaky:{scenario.name}") + 1
        if count % every:
            return None
        statuses = scenario.flaky.statuses or [429]
        status = statuses[(count // every - 1) % len(statuses)]
        wait = scenario.flaky.retry_after_s
        response = face.error(status, retry_after_s=wait)
        response.headers.setdefault("retry-after", str(max(1, round(wait + 0.4999))))
        response.headers.setdefault("retry-after-ms", str(round(wait * 1000)))
        return response

    # -- state -----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The whole simulator as JSON-serialisable data (blob bytes excluded)."""
        with self._lock:
            faces = dict(self._foreign_states)
            faces.update({name: face.to_state() for name, face in self.faces.items()})
            return {
                "format": STATE_FORMAT,
                "seed": self.seed,
                "clock": self.clock.state(),
                "scenario": self.scenario.model_dump(mode="json"),
                "scenarios": {
                    name: sc.model_dump(mode="json")
                    for name, sc in self._scenarios.items()
                    if name not in builtin_names()
                },
                "ids": self._ids,
                "counters": dict(self._counters),
                "jobs": [asdict(job) for job in self.jobs],
                "uploads": [asdict(upload) for upload in self.uploads],
                "blobs": sorted(self.blobs.keys()),
                "faces": faces,
                "replay": self.replay.to_state() if self.replay is not None else None,
            }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state to `path` and uploaded bytes to `path.blobs/` (atomically)."""
        target = Path(path)
        blobs = _blob_dir(target)
        with self._lock:
            state = self.to_state()
            if state["blobs"]:
                blobs.mkdir(parents=True, exist_ok=True)
            for key in state["blobs"]:
                blob = blobs / key
                if not blob.exists():
                    partial = blob.with_name(key + ".part")
                    partial.write_bytes(self.blobs.get(key))
                    partial.replace(blob)
            partial = target.with_name(target.name + ".part")
            partial.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
            partial.replace(target)
        return target

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, api_keys: Iterable[str] | None = None
    ) -> Simulator:
        """A simulator that continues from `save(path)`: same clock, files and jobs."""
        source = Path(path)
        try:
            state = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"{source}: cannot read simulator state: {exc}"
            raise SimulatorStateError(msg) from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            msg = f"{source}: not a costguard simulator state (expected format {STATE_FORMAT})"
            raise SimulatorStateError(msg)
        sim = cls(
            Scenario.model_validate(state["scenario"]),
            api_keys=api_keys,
            seed=state["seed"],
            clock=SimClock.restore(state["clock"]),
        )
        for data in state.get("scenarios", {}).values():
            sim.register_scenario(Scenario.model_validate(data))
        blobs = _blob_dir(source)
        for key in state["blobs"]:
            try:
                data = (blobs / key).read_bytes()
            except OSError as exc:
                msg = f"{blobs / key}: uploaded file missing from the saved state: {exc}"
                raise SimulatorStateError(msg) from exc
            if sim.blobs.put(data) != key:
                msg = f"{blobs / key}: contents do not match their sha256 name"
                raise SimulatorStateError(msg)
        sim._ids = int(state["ids"])
        sim._counters = Counter({k: int(v) for k, v in state["counters"].items()})
        sim.jobs = [JobRecord(**job) for job in state["jobs"]]
        sim.uploads = [UploadRecord(**upload) for upload in state["uploads"]]
        for name, face_state in state["faces"].items():
            face = sim.faces.get(name)
            if face is None:
                sim._foreign_states[name] = face_state  # kept, and saved again
            else:
                face.from_state(face_state)
        replay = state.get("replay")
        if replay:
            sim.attach_replay(replay["folder"]).from_state(replay)
        return sim


def _plain_error(status: int, message: str) -> SimResponse:
    return SimResponse.json(
        {"error": {"message": message, "type": "invalid_request_error", "code": None}}, status
    )


_ACTIVE: list[Simulator] = []
"""The simulators whose `simulate()` block is open in this process, innermost last."""


def active() -> bool:
    """Whether a `simulate()` block is answering this process's SDK calls now."""
    return bool(_ACTIVE)


@contextlib.contextmanager
def simulate(
    scenario: str | Path | Scenario | None = None,
    *,
    base_urls: Iterable[str] = (),
    api_keys: Iterable[str] | None = None,
    time_scale: float | None = None,
    state: str | os.PathLike[str] | None = None,
    strict: bool = True,
) -> Iterator[Simulator]:
    """Answer every OpenAI and Gemini SDK call in this process from a fresh simulator.

    Args:
        scenario: Default scenario name, YAML path, `Scenario`, or a recording folder to
            replay (`succeeded` when None).
        base_urls: Extra origins to answer besides the providers' own hosts
            (e.g. `"http://llm-gateway.internal"`); other hosts pass through untouched.
        api_keys: Accept only these keys (see `Simulator`).
        time_scale: Simulated seconds per wall second (0 = only `sim.advance()` moves time).
        state: A state file: loaded when it exists, saved after every request.
        strict: Raise `NotSimulatedError` at the end when a request matched no route or the
            simulator failed on one.

    Yields:
        The simulator, for assertions (`sim.calls`, `sim.jobs`, `sim.uploads`) and
        `sim.advance(seconds)`.
    """
    from costguard.simulator.mock import mock_transport

    if state is not None and Path(state).exists():
        sim = Simulator.load(state, api_keys=api_keys)
    else:
        sim = Simulator(scenario, api_keys=api_keys, time_scale=time_scale)
    if state is not None:
        sim.autosave = Path(state)
    with mock_transport(sim, base_urls=base_urls):
        _ACTIVE.append(sim)
        try:
            yield sim
        finally:
            _ACTIVE.remove(sim)
    problems = [*sim.failures, *sim.unmatched]
    if strict and problems:
        msg = f"{problems[0]} ({len(problems)} request(s) not simulated in all)"
        raise NotSimulatedError(msg)
