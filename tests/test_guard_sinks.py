"""`Skeleton`: a JSON answer kept without its images, whatever the chunks it arrives in."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from costguard.gateway.sinks import LONG_STRING, STAND_IN, Skeleton


def without_long_strings(value: Any) -> Any:
    """The reference: every string longer than LONG_STRING bytes (as JSON text) replaced."""
    if isinstance(value, dict):
        return {k: without_long_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_long_strings(v) for v in value]
    if isinstance(value, str) and len(json.dumps(value).encode()) - 2 > LONG_STRING:
        return STAND_IN.decode()
    return value


def kept(raw: bytes, cuts: list[int]) -> Any:
    sink = Skeleton(1 << 20)
    start = 0
    for cut in [*sorted(cuts), len(raw)]:
        sink.write(raw[start:cut])
        start = cut
    found = sink.finish("application/json")
    assert found is not None
    return found["json"]


def image(size: int, seed: int = 0) -> str:
    return base64.b64encode(random.Random(seed).randbytes(size)).decode()


def test_an_openai_answer_keeps_usage_and_loses_its_image() -> None:
    answer = {
        "created": 1,
        "data": [{"b64_json": image(1_500_000)}],
        "usage": {"input_tokens": 9, "output_tokens": 272, "total_tokens": 281},
    }
    raw = json.dumps(answer).encode()
    sink = Skeleton(1 << 20)
    for start in range(0, len(raw), 65536):
        sink.write(raw[start : start + 65536])
    data = sink.data()
    assert data is not None
    assert len(data) < 200
    assert json.loads(data) == without_long_strings(answer)


def test_any_cut_gives_the_same_skeleton_with_escapes_and_unicode() -> None:
    rng = random.Random(3)
    values = ['a "quoted" \\ back\\slash', "naïve ☃", "x" * (LONG_STRING + 1), "y" * LONG_STRING,
              "z\\" * 3000, image(4000, 1), ""]  # fmt: skip
    for _ in range(200):
        answer = {f"k{i}": rng.choice(values) for i in range(rng.randrange(1, 5))}
        answer["nested"] = [rng.choice(values), {"usageMetadata": {"n": rng.randrange(9)}}]
        raw = json.dumps(answer, ensure_ascii=rng.random() < 0.5).encode()
        cuts = [rng.randrange(len(raw) + 1) for _ in range(rng.randrange(0, 8))]
        assert kept(raw, cuts) == without_long_strings(answer)


def test_a_stream_of_events_keeps_each_events_usage() -> None:
    events = [{"candidates": [{"content": {"parts": [{"inlineData": {"data": image(9000)}}]}}]},
              {"usageMetadata": {"candidatesTokenCount": 1290}}]  # fmt: skip
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)
    sink = Skeleton(1 << 20)
    sink.write(raw)
    found = sink.finish("text/event-stream")
    assert found is not None
    lines = [line for line in found["raw"].split(b"\r\n") if line]
    assert [json.loads(line.removeprefix(b"data: ")) for line in lines] == [
        without_long_strings(e) for e in events
    ]


def test_past_the_limit_nothing_is_kept() -> None:
    sink = Skeleton(100)
    sink.write(json.dumps({"k": ["short"] * 100}).encode())
    assert sink.finish("application/json") is None


def test_escaped_slashes_as_some_encoders_write_base64_are_skipped_too() -> None:
    answer = {"data": [{"b64_json": image(300_000, 2)}], "usage": {"total_tokens": 281}}
    raw = json.dumps(answer).encode().replace(b"/", b"\\/")  # `\/`: a legal JSON escape
    for cut in (1, 4095, 65536, len(raw) - 2):
        assert kept(raw, [cut]) == without_long_strings(answer)
