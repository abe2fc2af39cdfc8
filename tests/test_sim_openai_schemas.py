"""The simulator's OpenAI bodies validate against OpenAI's own OpenAPI component schemas.

`tests/data/openai-schemas.json` holds the schemas (extracted from OpenAI's published
`openapi.yaml`, source and date inside, `$ref`s resolved, the fields the live API sends as
null made nullable). The real `openai` SDK drives the simulator over HTTP through full batch
cycles (completed, expired, failed, cancelled), files, lists, images generate / edit (plain
and streamed) and errors; every raw body it received is validated with `jsonschema`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openai import OpenAI

from costguard.simulator import Simulator
from costguard.simulator.server import serve_in_thread

SCHEMAS = json.loads(
    (Path(__file__).parent / "data" / "openai-schemas.json").read_text(encoding="utf-8")
)["schemas"]
KEY = "sk-test-schemas"
GENERATIONS = "/v1/images/generations"


class Bodies:
    """Raw bodies the SDK received, each with the schema it must match."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str, Any]] = []

    def add(self, schema: str, what: str, body: Any) -> Any:
        """Keep `body` (parsed JSON) to validate against `schema`; return it."""
        self.checked.append((schema, what, body))
        return body

    def raw(self, schema: str, what: str, response: Any) -> Any:
        """Keep the JSON of an SDK raw response; return the parsed SDK object."""
        self.add(schema, what, json.loads(response.http_response.content))
        return response.parse()

    def violations(self) -> list[str]:
        """One line per body that its schema rejects."""
        found = []
        for schema, what, body in self.checked:
            validator = jsonschema.Draft202012Validator(SCHEMAS[schema])
            for error in validator.iter_errors(body):
                where = "/".join(str(p) for p in error.absolute_path)
                found.append(f"{what} ({schema}) at {where or '.'}: {error.message[:200]}")
        return found


@pytest.fixture
def served() -> Iterator[tuple[Simulator, OpenAI]]:
    """A simulator with a stopped clock behind a real socket, and a strict SDK client."""
    sim = Simulator("succeeded", time_scale=0)
    with serve_in_thread(sim) as base_url:
        client = OpenAI(api_key=KEY, base_url=base_url + "/v1", _strict_response_validation=True)
        yield sim, client
        client.close()
    assert not sim.unmatched, sim.unmatched


def lines(count: int, *, refuse: int | None = None) -> bytes:
    """A batch input file of image generations (line `refuse` is refused)."""
    out = []
    for i in range(count):
        prompt = f"a red fox, study {i}" + (" [refuse]" if i == refuse else "")
        body = {"model": "gpt-image-1.5", "prompt": prompt, "quality": "low"}
        out.append({"custom_id": f"r{i}", "method": "POST", "url": GENERATIONS, "body": body})
    return "".join(json.dumps(line) + "\n" for line in out).encode()


def batch_cycle(
    sim: Simulator, client: OpenAI, bodies: Bodies, scenario: str, *, cancel: bool = False
) -> None:
    """Upload, create, poll through every status, download results; keep every body."""
    files, batches = client.files.with_raw_response, client.batches.with_raw_response
    upload = bodies.raw(
        "OpenAIFile",
        f"{scenario}: files.create",
        files.create(file=("in.jsonl", lines(4, refuse=2)), purpose="batch"),
    )
    bodies.raw("OpenAIFile", f"{scenario}: files.retrieve", files.retrieve(upload.id))
    batch = bodies.raw(
        "Batch",
        f"{scenario}: batches.create",
        batches.create(
            input_file_id=upload.id,
            endpoint=GENERATIONS,
            completion_window="24h",
            metadata={"cg_scenario": scenario},
        ),
    )
    if cancel:
        sim.advance(3600)
        bodies.raw("Batch", f"{scenario}: batches.cancel", batches.cancel(batch.id))
    for _ in range(60):
        batch = bodies.raw(
            "Batch", f"{scenario}: batches.retrieve {batch.status}", batches.retrieve(batch.id)
        )
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            break
        sim.advance(3 * 3600)
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id is None:
            continue
        bodies.raw("OpenAIFile", f"{scenario}: result file", files.retrieve(file_id))
        for raw in client.files.content(file_id).text.splitlines():
            line = json.loads(raw)
            if line["response"] is None:
                continue  # batch_expired / batch_cancelled: no response body (no schema)
            kind = "ImagesResponse" if line["response"]["status_code"] == 200 else "ErrorResponse"
            bodies.add(
                kind, f"{scenario}: result line {line['custom_id']}", line["response"]["body"]
            )


def images(client: OpenAI, bodies: Bodies) -> None:
    """images.generate and images.edit, plain and streamed, with the options that change the
    answer."""
    raw = client.images.with_raw_response
    for options in (
        {},
        {"background": "auto"},
        {"background": "transparent", "output_format": "webp"},
        {"quality": "high", "size": "1536x1024", "output_format": "jpeg"},
        {"n": 2, "moderation": "low"},
    ):
        bodies.raw(
            "ImagesResponse",
            f"images.generate {options}",
            raw.generate(model="gpt-image-1.5", prompt="a cube", **options),  # type: ignore[arg-type]
        )
    generated = client.images.generate(model="gpt-image-1.5", prompt="a cube").data
    png = base64.b64decode((generated or [])[0].b64_json or "")
    bodies.raw(
        "ImagesResponse",
        "images.edit",
        raw.edit(model="gpt-image-1.5", prompt="blue", image=("a.png", png, "image/png")),
    )
    for what, schema, call in (
        (
            "images.generate stream",
            "ImageGenStreamEvent",
            lambda: client.images.with_streaming_response.generate(
                model="gpt-image-1.5", prompt="a fox", stream=True, partial_images=2
            ),
        ),
        (
            "images.edit stream",
            "ImageEditStreamEvent",
            lambda: client.images.with_streaming_response.edit(
                model="gpt-image-1.5",
                prompt="blue",
                image=("a.png", png, "image/png"),
                stream=True,
                partial_images=1,
            ),
        ),
    ):
        with call() as response:
            text = b"".join(response.iter_bytes()).decode()
        for block in filter(None, text.split("\n\n")):
            data = block.split("\n", 1)[1].removeprefix("data: ")
            bodies.add(schema, what, json.loads(data))


def errors(client: OpenAI, bodies: Bodies) -> None:
    """Error bodies: 400 (validation, refusal), 404 (file, batch, model, retired), 401."""
    http = client._client  # the SDK's own HTTP client, to read bodies the SDK would raise on
    base = str(client.base_url).rstrip("/")
    auth = {"authorization": f"Bearer {KEY}"}
    cases = [
        ("GET", "/files/file-missing", None, auth),
        ("GET", "/batches/batch_missing", None, auth),
        ("POST", "/images/generations", {"prompt": "x", "model": "gpt-image-9"}, auth),
        ("POST", "/images/generations", {"prompt": "x"}, auth),
        ("POST", "/images/generations", {"prompt": "x [refuse]", "model": "gpt-image-1.5"}, auth),
        ("POST", "/images/generations", {"prompt": "x", "model": "gpt-image-1.5", "seed": 1}, auth),
        ("POST", "/batches", {"endpoint": GENERATIONS}, auth),
        ("GET", "/batches", None, {}),
    ]
    for method, path, body, headers in cases:
        answer = http.request(method, base + path, json=body, headers=headers)
        assert answer.status_code >= 400
        bodies.add("ErrorResponse", f"{method} {path} {answer.status_code}", answer.json())


def test_bodies_match_openais_component_schemas(served: tuple[Simulator, OpenAI]) -> None:
    """Full batch cycles, files, lists, images and errors: no body violates its schema."""
    sim, client = served
    bodies = Bodies()
    batch_cycle(sim, client, bodies, "succeeded")
    batch_cycle(sim, client, bodies, "expired")
    batch_cycle(sim, client, bodies, "failed")
    batch_cycle(sim, client, bodies, "succeeded", cancel=True)
    raw = client.batches.with_raw_response
    bodies.raw("ListBatchesResponse", "batches.list", raw.list(limit=2))
    files = client.files.with_raw_response
    bodies.raw("ListFilesResponse", "files.list", files.list(purpose="batch"))
    doomed = client.files.create(file=("x.jsonl", lines(1)), purpose="batch").id
    bodies.raw("DeleteFileResponse", "files.delete", files.delete(doomed))
    images(client, bodies)
    errors(client, bodies)
    kinds = {schema for schema, _, _ in bodies.checked}
    assert kinds == set(SCHEMAS)
    assert len(bodies.checked) > 60
    assert bodies.violations() == []


def test_schemas_catch_what_the_spec_forbids() -> None:
    """The extracted schemas are strict where the spec is: `background: auto` (what the
    simulator used to echo) and a missing required Batch field are violations."""
    images_response = jsonschema.Draft202012Validator(SCHEMAS["ImagesResponse"])
    assert not images_response.is_valid({"created": 1, "background": "auto"})
    assert images_response.is_valid({"created": 1, "background": "opaque"})
    batch = jsonschema.Draft202012Validator(SCHEMAS["Batch"])
    assert not batch.is_valid({"id": "batch_1", "object": "batch"})
