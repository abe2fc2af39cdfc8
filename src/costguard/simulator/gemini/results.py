"""Batch results: inline responses and result files, built from the stored requests when they
are read. Both are generated one result at a time while the body streams (the inline list
inside `batches.get`, `inline_chunks`; the result file, `_result_chunks`), so a large batch
is never held in memory as results, whatever its images weigh. Each result is dumped with
`splice.dump_pieces`, so an image's base64 (a cached head, then its own tail) is never copied
into a JSON string; a cached head is streamed as it is."""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator

from costguard.simulator.gemini.base import FaceBase
from costguard.simulator.gemini.batches import _Batch, _result_order
from costguard.simulator.gemini.content import (
    generate_response,
    prompt_text,
    refusal_for,
    request_key,
    validate_request,
)
from costguard.simulator.gemini.wire import JSON, _get
from costguard.simulator.splice import chunked, dump_pieces

RESULT_CHUNK_BYTES = 256 * 1024


class BatchResults(FaceBase):
    """Results of a job's kept requests, inline or as result-file lines."""

    def _result(self, batch: _Batch, position: int, request: object, key: object) -> JSON:
        """`{"response": ...}` or `{"error": ...}` for the request at `position` (`key`: its
        result-file key or inline `metadata.key`, when it has one)."""
        model = batch.model
        if isinstance(request, dict):
            item_model = _get(request, "model")
            if isinstance(item_model, str) and item_model:
                model = item_model.removeprefix("models/")
        problem = validate_request(model, request, self.table)
        if problem is not None or not isinstance(request, dict):
            code = 5 if self.table.lookup(model) is None else 3
            return {"error": {"code": code, "message": problem or "invalid request"}}
        refusal = refusal_for(batch.scenario, position, prompt_text(request))
        seed = f"{batch.id}:{position}"
        response = generate_response(
            model,
            request,
            refusal=refusal,
            seed=seed,
            image_for=self._images(batch.scenario),
            table=self.table,
            key=request_key(key, request, model),
            thinking=batch.scenario.thinking_tokens,
        )
        return {"response": response}

    def _inline_chunks(self, batch: _Batch, kept: int) -> Iterator[bytes]:
        """The `inlinedResponses` JSON list, one result generated at a time."""
        items = batch.inline or []

        def elements() -> Iterator[bytes]:
            for number, position in enumerate(_result_order(batch, kept)):
                item = items[position]
                metadata = _get(item, "metadata")
                result = self._result(batch, position, _get(item, "request"), _get(metadata, "key"))
                if metadata is not None:
                    result["metadata"] = metadata
                yield b"," if number else b"["
                yield from dump_pieces(result)
            yield b"]" if kept else b"[]"

        return chunked(elements(), RESULT_CHUNK_BYTES)

    def _result_pieces(self, batch: _Batch, kept: int) -> Iterator[bytes]:
        """The result file's JSONL lines, built one at a time, in pieces."""
        stored = self._files[batch.input_file or ""]
        content = self._content(stored)
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        pos = 0
        for line in content.splitlines(keepends=True):
            if line.strip():
                starts.append(pos)
                ends.append(pos + len(line))
            pos += len(line)
        for position in _result_order(batch, kept):
            entry = json.loads(content[starts[position] : ends[position]])
            key = entry.get("key")
            result = self._result(batch, position, _get(entry, "request"), key)
            yield from dump_pieces({"key": key, **result} if key is not None else result)
            yield b"\n"

    def _result_chunks(self, batch: _Batch, kept: int) -> Iterator[bytes]:
        return chunked(self._result_pieces(batch, kept), RESULT_CHUNK_BYTES)

    def _output_digest(self, batch: _Batch, kept: int) -> tuple[int, str]:
        if batch.output_digest is None:
            digest = hashlib.sha256()
            size = 0
            for piece in self._result_pieces(batch, kept):
                digest.update(piece)
                size += len(piece)
            batch.output_digest = (size, digest.hexdigest())
        return batch.output_digest
