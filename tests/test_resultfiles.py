"""Result files: lines read while they download, payloads cut out of the JSON pass."""

from __future__ import annotations

import base64
import json
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from costguard.providers.base import decode_base64
from costguard.providers.resultfiles import Sink, download_lines, loads


def _line(payload: str, *, sep: tuple[str, str] = (",", ":")) -> bytes:
    body = {"data": [{"b64_json": payload, "revised_prompt": None}], "output_format": "png"}
    record = {"custom_id": "k-1", "response": {"status_code": 200, "body": body}}
    return json.dumps(record, separators=sep).encode()


@pytest.mark.parametrize("sep", [(",", ":"), (", ", ": ")], ids=["compact", "spaced"])
def test_loads_is_json_loads_with_the_payloads_as_bytes(sep: tuple[str, str]) -> None:
    """Same structure and values; the long base64 value comes back as its bytes, undecoded."""
    image = os.urandom(300_000)
    payload = base64.b64encode(image).decode()
    raw = _line(payload, sep=sep)
    parsed = loads(raw, "b64_json")
    expected = json.loads(raw)
    item = parsed["response"]["body"]["data"][0]
    assert item.pop("b64_json") == payload.encode()
    expected["response"]["body"]["data"][0].pop("b64_json")
    assert parsed == expected
    assert decode_base64(payload.encode()) == image


def test_loads_leaves_short_and_escaped_values_to_json() -> None:
    """A short value, or one holding a JSON escape (not base64), is parsed by json as a str."""
    short = loads(_line("aGVsbG8="), "b64_json")
    assert short["response"]["body"]["data"][0]["b64_json"] == "aGVsbG8="
    escaped = "A" * 2000 + "\\/" + "B" * 2000
    raw = _line("x").replace(b'"x"', f'"{escaped}"'.encode())
    assert loads(raw, "b64_json")["response"]["body"]["data"][0]["b64_json"] == (
        "A" * 2000 + "/" + "B" * 2000
    )


def test_loads_does_not_copy_the_payload_through_json() -> None:
    """Parsing a 20 MB line allocates about one payload, not the several a JSON pass makes."""
    raw = _line(base64.b64encode(os.urandom(15_000_000)).decode())
    tracemalloc.start()
    try:
        loads(raw, "b64_json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.6 * len(raw)


def test_urlsafe_and_unpadded_base64_decode() -> None:
    """Gemini's SDK dumps URL-safe base64; padding may be left out."""
    data = bytes(range(256)) * 10
    assert decode_base64(base64.urlsafe_b64encode(data).rstrip(b"=")) == data
    assert decode_base64(base64.b64encode(data).decode()) == data


@pytest.mark.parametrize("keep", [False, True], ids=["in-memory", "keep-raw"])
def test_lines_are_read_while_the_file_downloads(tmp_path: Path, keep: bool) -> None:
    """Each line is handed over as soon as it is complete, before the download ends; with
    `keep` the file is kept under its final name once whole (and not downloaded again),
    without it nothing is written to disk."""
    lines = [json.dumps({"n": i}).encode() for i in range(5)]
    gates = [threading.Event() for _ in lines]

    def download(sink: Sink) -> None:
        for raw, gate in zip(lines, gates, strict=True):
            sink.write(raw[:3])
            sink.write(raw[3:] + b"\n")
            assert gate.wait(10), "the reader did not take the line"

    target = tmp_path / "output.jsonl"
    seen = []
    for i, raw in enumerate(download_lines(download, target, keep=keep)):
        seen.append(raw)
        gates[i].set()  # the download goes on only once this line was read
    assert seen == lines
    assert not (tmp_path / "output.jsonl.part").exists()
    if not keep:
        assert list(tmp_path.iterdir()) == []
        return
    assert target.read_bytes() == b"".join(raw + b"\n" for raw in lines)
    again = list(download_lines(lambda _s: pytest.fail("downloaded twice"), target, keep=True))
    assert again == lines


def test_a_failed_download_is_raised_after_what_arrived(tmp_path: Path) -> None:
    """Lines that arrived are read; the error follows; no file is taken as complete."""

    def download(sink: Sink) -> None:
        sink.write(b'{"n": 1}\n{"n": 2')
        raise ConnectionError("reset by peer")

    target = tmp_path / "output.jsonl"
    got = []
    with pytest.raises(ConnectionError, match="reset by peer"):
        got.extend(download_lines(download, target, keep=True))
    assert got == [b'{"n": 1}']
    assert not target.exists()


def test_a_reader_that_stops_ends_the_download(tmp_path: Path) -> None:
    """A collect that stops mid-file (an error writing an image) does not leave the download
    blocked on a full queue: its next write fails and the thread ends."""
    ended = threading.Event()

    def download(sink: Sink) -> None:
        try:
            for i in range(10_000):
                sink.write(json.dumps({"n": i}).encode() + b"\n")
        finally:
            ended.set()

    lines = download_lines(download, tmp_path / "output.jsonl")
    assert next(lines) == b'{"n": 0}'
    lines.close()
    assert ended.wait(10)
