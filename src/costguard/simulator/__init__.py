"""Offline simulator of the Gemini and OpenAI batch + files APIs, for the unmodified SDKs.

One `Simulator` (`host.py`) holds everything: a `Router` (route table), a `CallLog`, a `SimClock`, a
`BlobStore` for uploaded bytes, the default `Scenario`, and one *face* per provider
(`openai/`, `gemini/`). Two transports feed it `SimRequest`s and send its
`SimResponse`s back: the in-process respx mock (`mock.py`, used by `simulate()` and the
`costguard_sim` pytest fixture) and a real HTTP server (`server.py`, `costguard simulate serve`).

    with costguard.simulate(scenario="expired") as sim:   # in-process, no network
        ...                                               # any OpenAI / Gemini SDK code
        assert sim.calls.count("openai.batches.create") == 1

What `Simulator.handle(request)` does, in order:
1. picks the provider: by host (`api.openai.com`, `generativelanguage.googleapis.com`), else by
   Gemini's signals (`x-goog-*` headers, `?key=`, `/v1beta/`, `/upload/`, `:action` paths), else
   OpenAI. Both providers serve `/v1/batches` and `/v1/files`, so this comes first;
2. matches the provider's routes (names start with `<face.name>.`); no match answers 404 with
   `costguard-sim: POST /v1/foo not simulated`, noted in `sim.unmatched` (`simulate()` then
   raises `NotSimulatedError` when the block ends);
3. `face.authenticate(request, route_name)`: `None` lets the request through;
4. flaky injection per the scenario that governs the request (`face.request_scenario`, when the
   face has it, else the default): every `flaky.every`-th such call answers
   `face.error(status, retry_after_s=...)` plus `Retry-After` / `retry-after-ms` headers;
5. with a recording replayed (`sim.replay`, see `recording/replay.py`),
   `replay.answer(route, request, match)` first: the recorded answer, or None to go on;
   then the route's handler; an `UnknownScenarioError` it raises becomes `face.error(400, message)`,
   any other exception `face.error(500, ...)` with `x-should-retry: false`, noted in
   `sim.failures` (a simulator bug: `simulate()` raises at the end too);
6. one `CallLog` entry per request: (route name, method, path, status);
7. with `autosave` set, the state is saved; then `scenario.latency_s` may hold the answer.

Face interface (`face.py`; what `gemini/` implements as `class GeminiFace`)
---------------------------------------------------------------------------
    class GeminiFace:
        name = "gemini"          # prefix of every route name: "gemini.batches.create", ...
        def __init__(self, sim: Simulator) -> None
        def register(self, router: Router) -> None
            # router.add("gemini.batches.get", "GET", r"/v1(?:beta)?/batches/(?P<id>[^/:]+)", fn)
            # with fn(request: SimRequest, match: re.Match[str]) -> SimResponse
        def authenticate(self, request: SimRequest, route: str) -> SimResponse | None
            # None = go on; else the provider's auth error. Use `sim.key_allowed(key)`.
        def error(self, status: int, message: str | None = None, *,
                  retry_after_s: float | None = None) -> SimResponse
            # the provider-shaped error body for `status` (message None = the provider's usual
            # text for that status); used for flaky calls, unknown scenarios, unmatched paths.
        def to_state(self) -> dict[str, Any]        # JSON-serialisable; bytes go to sim.blobs
        def from_state(self, state: dict[str, Any]) -> None
        # optional:
        def request_scenario(self, request, route: str, match) -> Scenario | None
            # the per-job scenario governing this call (flaky injection), None = default

The simulator offers faces:
- `sim.clock.now()` (simulated epoch seconds, `time_scale`x faster than wall time);
- `sim.scenario` (default), `sim.scenario_for(display_name)` (finds `cg_scenario=NAME` in free
  text, else the default), `sim.scenario_named(name)` (strict; OpenAI's metadata value); both
  raise `UnknownScenarioError` listing the built-ins, which `handle` turns into a 400;
  `scenario.refuses(position, prompt)` and `scenario.order(n)` are the shared refusal and
  shuffle rules;
- `sim.images.image_for(seed, mime)` / `sim.images.b64(seed, mime)`: real, tiny, deterministic;
  `sim.images.render(seed, mime, size, pad_to)` / `render_b64(...)`: what a request gets (tiny
  when `size` is None, else that pixel size; padded to `pad_to` bytes); `render_base64(...)`:
  the same as a `splice.Base64` (pieces, a padded image's cached head first), which response
  bodies carry: `SimResponse.json` and `splice.dump_pieces` write it as a JSON string;
- `sim.blobs.put(data) -> key`, `.get(key)`, `.discard(key)`: upload storage saved with the state;
- `sim.new_id(length, alphabet)`: deterministic ids; `sim.next_index(counter)`: per-simulator
  counters (sync-call positions); `sim.key_allowed(key)`;
- `sim.record_job(provider, job_id, scenario_name, requests)` and
  `sim.record_upload(provider, file_id, filename, nbytes, purpose)`: what tests read back as
  `sim.jobs` and `sim.uploads`.

State: `sim.save(path)` writes `path` (JSON: clock, default scenario, counters, each face's
`to_state()`) and `path.blobs/<sha256>` (uploaded bytes, written once). `Simulator.load(path)`
continues from there; generated images and result files are regenerated, never stored. API
keys are never written.

Modules, lowest first: `splice` (JSON with base64 spliced in), `core` (requests, responses,
routes, clock, call log, blobs), `scenario` and `images`, `face` (the `Face` protocol,
`provider_of`), `records` (`JobRecord`, `UploadRecord`, the state format), `host`
(`Simulator`, `simulate()`), the faces `openai/` and `gemini/`, `recording/` (record and
replay), and the transports `mock` (with the pytest fixture in `plugin`) and `server`.

This package re-exports the names other modules use: `Simulator`, `simulate`, `Face`,
`JobRecord`, `UploadRecord`, `SimulatorStateError`, `PROVIDER_HOSTS`, `provider_of`, and from
`core` and `scenario` `SimRequest`, `SimResponse`, `NotSimulatedError`, `UnknownScenarioError`.
"""

from costguard.simulator.core import NotSimulatedError, SimRequest, SimResponse
from costguard.simulator.face import PROVIDER_HOSTS, Face, provider_of
from costguard.simulator.host import Simulator, simulate
from costguard.simulator.records import JobRecord, SimulatorStateError, UploadRecord
from costguard.simulator.scenario import UnknownScenarioError

__all__ = [
    "PROVIDER_HOSTS",
    "Face",
    "JobRecord",
    "NotSimulatedError",
    "SimRequest",
    "SimResponse",
    "Simulator",
    "SimulatorStateError",
    "UnknownScenarioError",
    "UploadRecord",
    "provider_of",
    "simulate",
]
