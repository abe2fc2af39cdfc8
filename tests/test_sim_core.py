"""Simulator infrastructure: core types, scenarios, images, `handle`, state and `simulate`."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import httpx2
import pytest
from PIL import Image

from costguard.resources import data_dir
from costguard.simulator import (
    NotSimulatedError,
    Simulator,
    SimulatorStateError,
    UnknownScenarioError,
    provider_of,
    simulate,
)
from costguard.simulator.core import BlobStore, CallLog, Router, SimClock, SimRequest, SimResponse
from costguard.simulator.images import image_for
from costguard.simulator.scenario import Flaky, Scenario, builtin_names, load_scenario
from costguard.simulator.server import serve_in_thread

KEY = "sk-core-test"
AUTH = [("authorization", f"Bearer {KEY}")]


def request(method: str, path: str, body: object = None, **options: object) -> SimRequest:
    """A SimRequest with a Bearer key and an optional JSON body."""
    data = b"" if body is None else json.dumps(body).encode()
    return SimRequest.build(method, path, headers=AUTH, body=data, **options)  # type: ignore[arg-type]


def multipart(filename: str, data: bytes, purpose: str = "batch") -> SimRequest:
    """A files.create request as the SDK sends it."""
    b = "cgboundary"
    body = (
        (
            f'--{b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{b}--\r\n".encode()
    )
    headers = [*AUTH, ("content-type", f"multipart/form-data; boundary={b}")]
    return SimRequest.build("POST", "/v1/files", headers=headers, body=body)


def batch_input(count: int) -> bytes:
    """A valid images batch input file."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": "gpt-image-1", "prompt": f"fox {i}", "quality": "low"},
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def start_batch(sim: Simulator, count: int = 4, **extra: object) -> str:
    """Upload and create a batch through `handle`; its id."""
    uploaded = json.loads(sim.handle(multipart("in.jsonl", batch_input(count))).read())
    body = {
        "input_file_id": uploaded["id"],
        "endpoint": "/v1/images/generations",
        "completion_window": "24h",
        **extra,
    }
    answer = sim.handle(request("POST", "/v1/batches", body))
    assert answer.status == 200, answer.read()
    return str(json.loads(answer.read())["id"])


# -- core types ------------------------------------------------------------------------------


def test_request_build_normalises_headers_and_query() -> None:
    """Header names are lower-cased, the query parsed, the base URL trimmed."""
    req = SimRequest.build(
        "get",
        "/v1/files",
        query_string="limit=2&after=file-a&limit=3",
        headers=[("X-Test", "1")],
        base_url="http://h:1/",
    )
    assert (req.method, req.headers, req.base_url) == ("GET", {"x-test": "1"}, "http://h:1")
    assert req.arg("limit") == "2"
    assert req.query["limit"] == ["2", "3"]
    assert req.arg("missing", "d") == "d"
    assert req.json() == {}


def test_router_matches_full_paths_within_a_prefix() -> None:
    """A route matches its method and the whole path; `prefix` limits the provider."""
    router = Router()
    router.add("openai.x", "GET", r"/v1/batches/(?P<id>[^/]+)", lambda r, m: SimResponse())
    router.add("gemini.x", "GET", r"/v1/batches/(?P<id>[^/]+)", lambda r, m: SimResponse())
    found = router.match(SimRequest.build("GET", "/v1/batches/b1"), prefix="gemini.")
    assert found is not None
    assert (found[0].name, found[1]["id"]) == ("gemini.x", "b1")
    assert router.match(SimRequest.build("GET", "/v1/batches/b1/extra")) is None
    assert router.match(SimRequest.build("POST", "/v1/batches/b1")) is None


def test_clock_advances_restores_and_can_stand_still() -> None:
    """A stopped clock moves only with advance(); restore continues from the saved time."""
    clock = SimClock(time_scale=0, start=1000.0)
    assert clock.now() == 1000.0
    clock.advance(60)
    assert clock.now() == 1060.0
    resumed = SimClock.restore(clock.state())
    assert resumed.now() >= 1060.0
    assert resumed.time_scale == 0


def test_call_log_counts_by_endpoint() -> None:
    """count(), statuses() and by_endpoint() read back what was recorded."""
    log = CallLog()
    req = SimRequest.build("GET", "/v1/files")
    log.record("openai.files.list", req, 200)
    log.record("openai.files.list", req, 429)
    log.record("openai.batches.list", req, 200)
    assert log.count("openai.files.list") == 2
    assert log.count() == 3
    assert log.statuses("openai.files.list") == [200, 429]
    assert log.by_endpoint()["openai.batches.list"] == 1


def test_blob_store_is_content_addressed() -> None:
    """Equal bytes share one key; discard forgets them."""
    blobs = BlobStore()
    key = blobs.put(b"abc")
    assert blobs.put(b"abc") == key
    assert blobs.get(key) == b"abc"
    assert len(blobs) == 1
    blobs.discard(key)
    assert key not in blobs


# -- scenarios --------------------------------------------------------------------------------


def test_builtin_scenarios_exist_and_load() -> None:
    """The ten built-in scenarios load, each with a one-line description."""
    assert builtin_names() == [
        "cancelled",
        "expired",
        "failed",
        "flaky",
        "quota",
        "realistic",
        "refusals",
        "shuffled",
        "slow",
        "succeeded",
    ]
    for name in builtin_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.description
        assert "\n" not in scenario.description


def test_scenario_timelines_fit_their_promises() -> None:
    """succeeded ends within a few wall seconds; slow stays under 20 s and inside 24 h."""
    fast = load_scenario("succeeded")
    fast_total = fast.pending_s + fast.running_s + fast.finalizing_s
    assert fast_total / fast.time_scale < 3
    slow = load_scenario("slow")
    slow_total = slow.pending_s + slow.running_s + slow.finalizing_s
    assert slow_total < 24 * 3600
    assert slow_total / slow.time_scale < 20
    assert slow.pending_s / slow.time_scale > fast_total / fast.time_scale
    expired = load_scenario("expired")
    assert 48 * 3600 / expired.time_scale < 10


def test_refusal_rule_is_positional_plus_marker() -> None:
    """refusals every=4 offset=3 refuses positions 3, 7, ...; the marker refuses anywhere."""
    refusals = load_scenario("refusals")
    assert [i for i in range(12) if refusals.refuses(i, "fox")] == [3, 7, 11]
    plain = load_scenario("succeeded")
    assert not any(plain.refuses(i, "fox") for i in range(12))
    assert plain.refuses(0, "a fox [refuse]")
    assert plain.refuses(None, "[refuse]")


def test_shuffle_is_a_fixed_permutation() -> None:
    """order() of a shuffling scenario is a permutation, out of order, the same every time."""
    shuffled = load_scenario("shuffled")
    order = list(shuffled.order(50_000))
    assert sorted(order) == list(range(50_000))
    assert order != sorted(order)
    assert order == list(shuffled.order(50_000))
    assert list(load_scenario("succeeded").order(5)) == [0, 1, 2, 3, 4]


def test_unknown_scenario_names_the_builtins() -> None:
    """An unknown name raises a one-line error listing the built-in scenarios."""
    with pytest.raises(UnknownScenarioError, match="unknown scenario 'nope'; built-in") as caught:
        load_scenario("nope")
    assert "succeeded" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_scenario_file_names_the_file_and_field(tmp_path: Path) -> None:
    """A scenario file with a bad field fails with the path and the field."""
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndescription: x\nterminal: exploded\n")
    with pytest.raises(UnknownScenarioError, match=r"mine\.yaml: invalid scenario: terminal"):
        load_scenario(str(path))


# -- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "fmt"), [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP")]
)
def test_images_decode_and_are_deterministic(mime: str, fmt: str) -> None:
    """image_for gives a real decodable image, the same bytes for the same seed."""
    data = image_for("seed-1", mime)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == fmt
    assert image_for("seed-1", mime) == data


def test_png_and_jpeg_differ_per_seed() -> None:
    """Two seeds give two different PNG (and JPEG) files."""
    assert image_for("a") != image_for("b")
    assert image_for("a", "image/jpeg") != image_for("b", "image/jpeg")


def test_unknown_image_type_is_refused() -> None:
    """An image type with no recordings raises, naming the known ones."""
    with pytest.raises(ValueError, match="image/png"):
        image_for("x", "image/gif")


# -- Simulator.handle ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "path", "headers", "query", "provider"),
    [
        ("https://api.openai.com", "/v1/batches", [], "", "openai"),
        ("https://generativelanguage.googleapis.com", "/v1/batches", [], "", "gemini"),
        ("http://127.0.0.1:9", "/v1/batches", [("x-goog-api-key", "k")], "", "gemini"),
        ("http://127.0.0.1:9", "/v1/batches", [], "key=k", "gemini"),
        ("http://127.0.0.1:9", "/v1beta/batches", [], "", "gemini"),
        ("http://127.0.0.1:9", "/v1/batches/abc:cancel", [], "", "gemini"),
        ("http://127.0.0.1:9", "/upload/v1/files", [], "", "gemini"),
        ("http://127.0.0.1:9", "/v1/batches", AUTH, "", "openai"),
        ("http://127.0.0.1:9", "/v1/batches/batch_1/cancel", AUTH, "", "openai"),
    ],
)
def test_provider_is_picked_by_host_then_signals(
    base_url: str, path: str, headers: list[tuple[str, str]], query: str, provider: str
) -> None:
    """Both providers serve /v1/batches: host first, then Gemini's signals, else OpenAI."""
    req = SimRequest.build("GET", path, headers=headers, query_string=query, base_url=base_url)
    assert provider_of(req) == provider


def test_unmatched_requests_fail_loudly() -> None:
    """A path no route serves answers 404 naming the request and is noted in `unmatched`."""
    sim = Simulator(time_scale=0)
    answer = sim.handle(request("POST", "/v1/foo"))
    assert answer.status == 404
    message = "costguard-sim: POST /v1/foo not simulated"
    assert json.loads(answer.read())["error"]["message"] == message
    assert sim.unmatched == [message]
    assert sim.calls.count("unmatched") == 1


def test_simulate_raises_at_exit_for_unmatched_requests() -> None:
    """simulate() ends with NotSimulatedError when a request went unanswered."""
    with pytest.raises(NotSimulatedError, match="POST /v1/foo not simulated"), simulate():
        httpx2.post("https://api.openai.com/v1/foo", headers=dict(AUTH))


def test_scenario_for_reads_the_marker_in_free_text() -> None:
    """cg_scenario=NAME in a display name selects NAME; other text gets the default."""
    sim = Simulator("succeeded")
    assert sim.scenario_for(None).name == "succeeded"
    assert sim.scenario_for("nightly run").name == "succeeded"
    assert sim.scenario_for("nightly cg_scenario=expired run").name == "expired"
    assert sim.scenario_for("cg_scenario=expired") is sim.scenario_for("x cg_scenario=expired")
    with pytest.raises(UnknownScenarioError, match=r"known scenarios: .*shuffled"):
        sim.scenario_for("cg_scenario=bogus")


def test_request_data_never_loads_a_file_path(tmp_path: Path) -> None:
    """scenario_named resolves registered and built-in names only, never paths."""
    path = tmp_path / "evil.yaml"
    path.write_text("name: evil\ndescription: x\n")
    sim = Simulator()
    with pytest.raises(UnknownScenarioError):
        sim.scenario_named(str(path))
    sim.register_scenario(Scenario(name="mine", description="registered", terminal="expired"))
    assert sim.scenario_named("mine").terminal == "expired"


def test_flaky_answers_carry_retry_hints() -> None:
    """Under flaky, every 3rd call is 429 then 503, with Retry-After and retry-after-ms."""
    sim = Simulator("flaky", time_scale=0)
    answers = [sim.handle(request("GET", "/v1/batches")) for _ in range(6)]
    assert [a.status for a in answers] == [200, 200, 429, 200, 200, 503]
    limited = answers[2]
    assert (limited.headers["retry-after"], limited.headers["retry-after-ms"]) == ("1", "50")
    assert json.loads(limited.read())["error"]["code"] == "rate_limit_exceeded"
    assert json.loads(answers[5].read())["error"]["type"] == "server_error"


def test_custom_flaky_statuses_use_the_provider_bodies() -> None:
    """A scenario whose flaky calls answer 500 sends the provider's 500 body and hints."""
    scenario = Scenario(
        name="wobbly", description="500 every other call", flaky=Flaky(every=2, statuses=[500])
    )
    sim = Simulator(scenario, time_scale=0)
    answers = [sim.handle(request("GET", "/v1/files")) for _ in range(4)]
    assert [a.status for a in answers] == [200, 500, 200, 500]
    error = json.loads(answers[1].read())["error"]
    assert (error["type"], error["message"]) == (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    )
    assert answers[1].headers["retry-after-ms"] == "1000"


def test_per_job_flaky_scenario_only_touches_that_job() -> None:
    """A job created with cg_scenario=flaky gets flaky answers; other calls do not."""
    sim = Simulator(time_scale=0)
    batch_id = start_batch(sim, metadata={"cg_scenario": "flaky"})
    statuses = [sim.handle(request("GET", f"/v1/batches/{batch_id}")).status for _ in range(5)]
    assert statuses.count(200) == 3
    assert {s for s in statuses if s != 200} <= {429, 503}
    assert [sim.handle(request("GET", "/v1/files")).status for _ in range(4)] == [200] * 4


def test_a_broken_handler_answers_500_and_is_reported() -> None:
    """An exception in a face becomes a 500 that tells the SDK not to retry, noted in failures."""
    sim = Simulator(time_scale=0)

    def broken(req: SimRequest, match: re.Match[str]) -> SimResponse:
        raise KeyError("boom")

    sim.router.add("openai.broken", "GET", r"/v1/broken", broken)
    answer = sim.handle(request("GET", "/v1/broken"))
    assert answer.status == 500
    assert answer.headers["x-should-retry"] == "false"
    assert sim.failures == ["costguard-sim: internal error in openai.broken: KeyError: 'boom'"]


def test_keys_are_checked_only_when_restricted() -> None:
    """Any non-empty key passes unless api_keys restricts them."""
    assert Simulator().key_allowed("anything")
    assert not Simulator().key_allowed("")
    strict = Simulator(api_keys={"sk-a"})
    assert strict.key_allowed("sk-a")
    assert not strict.key_allowed("sk-b")


def test_ids_are_deterministic_per_seed() -> None:
    """Two simulators with one seed hand out the same ids, in order."""
    first, second = Simulator(seed="s"), Simulator(seed="s")
    assert [first.new_id(10) for _ in range(3)] == [second.new_id(10) for _ in range(3)]
    assert Simulator(seed="t").new_id(10) != Simulator(seed="s").new_id(10)


def test_runs_without_the_gemini_face(monkeypatch: pytest.MonkeyPatch) -> None:
    """When costguard.simulator.gemini does not exist, the simulator runs with OpenAI only."""
    monkeypatch.setitem(sys.modules, "costguard.simulator.gemini", None)
    sim = Simulator()
    assert sim.gemini is None
    assert list(sim.faces) == ["openai"]


# -- state -------------------------------------------------------------------------------------


def test_save_and_load_continue_the_same_provider(tmp_path: Path) -> None:
    """A loaded simulator has the same files, jobs, ids and clock, and never goes back in time."""
    sim = Simulator(time_scale=0, api_keys={KEY})
    batch_id = start_batch(sim, count=6)
    sim.advance(600 + 1800)
    before = json.loads(sim.handle(request("GET", f"/v1/batches/{batch_id}")).read())
    path = sim.save(tmp_path / "sim.json")

    loaded = Simulator.load(path, api_keys={KEY})
    after = json.loads(loaded.handle(request("GET", f"/v1/batches/{batch_id}")).read())
    assert after["status"] == before["status"] == "in_progress"
    assert after["request_counts"] == before["request_counts"]
    assert loaded.now() >= sim.now()
    assert loaded.jobs == sim.jobs
    assert loaded.uploads == sim.uploads
    assert loaded.new_id() == sim.new_id()
    loaded.advance(86400)
    done = json.loads(loaded.handle(request("GET", f"/v1/batches/{batch_id}")).read())
    content = loaded.handle(request("GET", f"/v1/files/{done['output_file_id']}/content"))
    assert content.read().count(b"\n") == 6


def test_saved_state_holds_no_key_and_no_image(tmp_path: Path) -> None:
    """The state file and its blobs hold neither the API key nor generated images."""
    sim = Simulator(time_scale=0, api_keys={KEY})
    batch_id = start_batch(sim)
    sim.advance(86400)
    sim.handle(request("GET", f"/v1/batches/{batch_id}"))
    path = sim.save(tmp_path / "sim.json")
    files = [path, *sorted((tmp_path / "sim.json.blobs").iterdir())]
    assert len(files) == 2  # the state and the one uploaded input file
    for file in files:
        data = file.read_bytes()
        assert KEY.encode() not in data
        assert b"b64_json" not in data


def test_load_refuses_missing_or_foreign_files(tmp_path: Path) -> None:
    """Loading a missing file or another JSON fails with a one-line error naming the file."""
    with pytest.raises(SimulatorStateError, match=r"missing\.json: cannot read"):
        Simulator.load(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(SimulatorStateError, match=r"other\.json: not a costguard simulator state"):
        Simulator.load(other)


def test_simulate_with_state_resumes_after_the_block(tmp_path: Path) -> None:
    """simulate(state=...) saves after every request and a later block picks it up."""
    path = tmp_path / "run.json"
    with simulate(state=path) as sim:
        batch_id = start_batch(sim)
    assert path.exists()
    with simulate(state=path) as again:
        answer = again.handle(request("GET", f"/v1/batches/{batch_id}"))
    assert answer.status == 200
    assert [job.id for job in again.jobs] == [batch_id]


def test_no_fixture_holds_a_key() -> None:
    """No file under fixtures/ contains something shaped like an OpenAI or Google API key."""
    key_shapes = re.compile(rb"sk-(?:proj-)?[A-Za-z0-9_\-]{20,}|AIza[0-9A-Za-z_\-]{30,}")
    folder = data_dir("fixtures")
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        assert not key_shapes.search(path.read_bytes()), path


def test_simulate_answers_extra_origins_and_passes_others_through() -> None:
    """base_urls adds origins to answer; other hosts (a real local server) pass through."""
    other = Simulator(time_scale=0)
    with (
        serve_in_thread(other) as local_url,
        simulate(base_urls=["http://gateway.test:8080"]) as sim,
    ):
        via_gateway = httpx2.get("http://gateway.test:8080/v1/batches", headers=dict(AUTH))
        via_socket = httpx2.get(f"{local_url}/v1/files", headers=dict(AUTH))
    assert via_gateway.json()["object"] == "list"
    assert sim.calls.count("openai.batches.list") == 1
    assert via_socket.status_code == 200
    assert other.calls.count("openai.files.list") == 1
    assert sim.calls.count("openai.files.list") == 0


def test_a_body_that_is_not_json_is_a_400() -> None:
    """batches.create with a body that is not JSON answers 400, not a crash."""
    sim = Simulator(time_scale=0)
    answer = sim.handle(SimRequest.build("POST", "/v1/batches", headers=AUTH, body=b"{nope"))
    assert answer.status == 400
    assert json.loads(answer.read())["error"]["message"] == "The body is not valid JSON."
    assert sim.failures == []
