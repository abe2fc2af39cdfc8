"""The gateway: the proxy core (`costguard.proxy.forward`) with a gate that prices, admits and
settles every paid call in the ledger.

`Guard` is both the proxy's `ExchangeSink` (it names requests, keeps the bodies it needs and
takes each finished exchange) and its `Gate` (before forwarding a paid call it prices it and
reserves the maximum; a call that does not fit is answered in the provider's own error shape
and never forwarded). See `routes` for which calls are paid, `price` for pricing, `book` for
the ledger, `jobs` for settling batches and `watch` for the poller.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from costguard.gateway import jobs, price
from costguard.gateway.book import Book
from costguard.gateway.price import Priced, UnpriceableError
from costguard.gateway.routes import PAID_BATCH, PAID_SYNC, key_of, owner_of, route_of
from costguard.gateway.sinks import NULL, Skeleton, Spool
from costguard.gateway.uploads import Uploads
from costguard.ledger.records import Run
from costguard.models import ImageRequest
from costguard.money import usd
from costguard.pricing.engine import RateBook
from costguard.providers import gemini as gemini_wire
from costguard.providers import openai as openai_wire
from costguard.proxy.forward import BodySink, Exchange, create_proxy_app, read_body
from costguard.proxy.scrub import Scrubber
from costguard.queue.lines import OPENAI_URLS
from costguard.queue.reader import Format

__all__ = ["DEFAULT_UPSTREAMS", "Guard", "GuardOptions", "create_guard_app"]

DEFAULT_UPSTREAMS = {
    "openai": "https://api.openai.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
REFUSED_STATUS = 402
"""Payment Required: neither SDK retries it (OpenAI retries 408, 409, 429 and 5xx; google-genai
retries nothing by default and 408/429/5xx with HttpRetryOptions), so the pipeline fails at
once."""
UNPRICED_STATUS = 400
JSON_LIMIT = 64 * 1024 * 1024
"""Largest skeleton of a JSON answer kept to reconcile from (images are not kept: `Skeleton`;
a Gemini inline batch of 50,000 results leaves ~25 MB)."""


@dataclass
class GuardOptions:
    """How a gateway guards."""

    budget: str
    max_usd: Decimal | None = None
    upstreams: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_UPSTREAMS))
    allow_unpriced: bool = False
    grace_s: float = 3600.0
    """How long after a batch is seen terminal its results may still pass through before it
    is settled from the batch object alone (unreconciled when that has no usage)."""
    poll_s: float = 30.0
    """How often the watcher (`watch`) polls open jobs and settles what is overdue."""
    owner: str | None = None
    """The owner of calls that carry no `X-Costguard-Owner` header (default: the key's
    fingerprint)."""
    max_body: int = 2 * 1024 * 1024 * 1024
    """Largest request body forwarded (Gemini batch input files go up to 2 GB)."""
    sync_body: int = 64 * 1024 * 1024
    """Largest paid-call body read whole to be priced."""


@dataclass
class _Call:
    """What the gateway knows of one exchange in flight."""

    exchange: Exchange
    run_id: str | None = None
    priced: Priced | None = None
    requests: list[ImageRequest] = field(default_factory=list)
    job: str | None = None
    """The provider's job id a batch read or download is about."""


def refusal(provider: str, status: int, message: str, *, code: str) -> Response:
    """An error answer in the provider's own shape."""
    if provider == "gemini":
        kind = "FAILED_PRECONDITION" if status == REFUSED_STATUS else "INVALID_ARGUMENT"
        body: dict[str, Any] = {"error": {"code": status, "message": message, "status": kind}}
        return JSONResponse(body, status_code=status)
    kind = "budget_exceeded" if status == REFUSED_STATUS else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers={"x-should-retry": "false"})


class Guard:
    """The gateway's sink and gate (see the module docstring)."""

    def __init__(
        self,
        book: Book,
        rates: RateBook,
        options: GuardOptions,
        *,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.book = book
        self.rates = rates
        self.options = options
        self.log = log or (lambda _line: None)
        self.scrubber = Scrubber()
        self.upstream = ", ".join(f"{p}={u}" for p, u in options.upstreams.items())
        self.uploads = Uploads()
        self._seq = 0
        self._calls: dict[int, _Call] = {}
        self._jobs: dict[tuple[str, str], str] = {}
        """(provider, job id) -> run id of the batches this gateway admitted or resumed."""
        self._results: dict[tuple[str, str], str] = {}
        """(provider, result file id) -> job id."""
        self.keys: dict[str, str] = {}
        """The latest key seen per provider, in memory only, for the poller."""
        self._lock = threading.Lock()
        self.resume()

    # -- ExchangeSink ---------------------------------------------------------------------

    def note_origin(self, origin: str) -> None:
        """Not needed: the gateway writes no URLs."""

    def next_seq(self) -> int:
        """The next exchange number."""
        with self._lock:
            self._seq += 1
            return self._seq

    def upstream_for(self, provider: str) -> str | None:
        """The provider's upstream base URL."""
        return self.options.upstreams.get(provider)

    def route_of(
        self, method: str, path: str, query_string: str, headers: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        """Named by the gateway's own table (`routes`)."""
        from urllib.parse import parse_qs

        return route_of(method, path, parse_qs(query_string), headers)

    def sink(  # noqa: PLR0911 - one answer per kind of body
        self, seq: int, route: str, part: str, *, prefer_file: bool = False
    ) -> BodySink:
        """Keep what this exchange's bookkeeping needs, and nothing else."""
        del prefer_file
        call = self._calls.get(seq)
        if call is None:
            return NULL
        if part == "request":
            if route == "openai.files.create":
                return Spool(self.uploads.new_path("openai-upload"))
            upload_id = call.exchange.query.get("upload_id", [""])[0]
            command = call.exchange.headers.get("x-goog-upload-command", "")
            if route == "gemini.files.upload" and upload_id and "upload" in command:
                return Spool(self.uploads.chunk_path(upload_id), append=True)
            return NULL
        if route in ("openai.files.content", "gemini.files.download"):
            return Spool(self.uploads.new_path("results")) if call.job else NULL
        if call.run_id is not None or route in (
            "openai.files.create",
            "gemini.files.upload",
            "openai.batches.retrieve",
            "gemini.batches.get",
        ):
            return Skeleton(JSON_LIMIT)
        return NULL

    def commit(self, record: dict[str, Any]) -> None:
        """A finished exchange: reconcile what it tells."""
        with self._lock:
            call = self._calls.pop(record["seq"], None)
        if call is None:
            return
        status = int(record["response"]["status"])
        body = record["response"]["body"] or {}
        answer = body.get("json") if isinstance(body, dict) else None
        route = call.exchange.route
        try:
            if call.run_id is not None:
                self._after_paid(call, status, answer, body)
            elif route == "openai.files.create":
                self._openai_uploaded(record, status, answer)
            elif route == "gemini.files.upload":
                self._gemini_uploaded(call, status, answer)
            elif route in ("openai.batches.retrieve", "gemini.batches.get") and status == 200:
                self.seen_batch(call.exchange.provider, call.exchange.params["batch"], answer)
            elif route in ("openai.files.content", "gemini.files.download") and call.job:
                self._results_passed(call, status, body, complete=bool(record["complete"]))
        except Exception as exc:  # noqa: BLE001 - the answer has gone; log, never crash the proxy
            self.log(f"costguard guard: bookkeeping of {route} failed: {exc}")

    # -- Gate -----------------------------------------------------------------------------

    async def before(self, exchange: Exchange, request: Request) -> Response | bytes | None:
        """Price and admit a paid call; refuse what does not fit."""
        key = key_of(exchange.headers, exchange.query)
        if key:
            self.keys[exchange.provider] = key  # memory only: the poller's credentials
        call = _Call(exchange)
        route = exchange.route
        if route in ("openai.files.content", "gemini.files.download"):
            file_id = exchange.params.get("file", "")
            call.job = self._results.get((exchange.provider, file_id))
            if exchange.provider == "gemini" and file_id.startswith("batch-"):
                job = file_id.removeprefix("batch-")
                call.job = job if (exchange.provider, job) in self._jobs else None
        with self._lock:
            self._calls[exchange.seq] = call
        if route not in PAID_SYNC and route not in PAID_BATCH:
            return None
        limit = self.options.sync_body if route in PAID_SYNC else 64 * 1024 * 1024
        body = await read_body(request, limit)
        return await run_in_threadpool(self._price_and_admit, call, body)  # one thread hop

    def _price_and_admit(self, call: _Call, body: bytes) -> Response | bytes:
        """Price a paid call and reserve its maximum: the body to forward, or the answer."""
        exchange = call.exchange
        try:
            priced, requests, meta = self._price(exchange, body)
        except UnpriceableError as exc:
            return self._unpriced(exchange, body, str(exc))
        if priced is None:  # not an image call: not the gateway's business
            return body
        owner, source = owner_of(exchange.headers, exchange.query)
        if source != "header" and self.options.owner:
            owner, source = self.options.owner, "gateway option"
        meta |= {"route": exchange.route, "provider": exchange.provider, "owner_source": source}
        admission = self.book.admit(priced, owner=owner, meta=meta)
        if not admission.admitted:
            with self._lock:
                self._calls.pop(exchange.seq, None)
            message = (
                f"costguard guard: budget {self.book.budget!r} refused this call: "
                f"{admission.reason}. Nothing was sent to the provider."
            )
            exchange.note = f"refused for {owner}: needs {usd(admission.needed)}"
            return refusal(
                exchange.provider, REFUSED_STATUS, message, code="costguard_budget_exceeded"
            )
        call.run_id = admission.run_id
        exchange.note = f"admitted for {owner} up to {usd(priced.maximum)} ({admission.run_id})"
        call.priced = priced
        call.requests = requests
        return body

    def failed(self, exchange: Exchange) -> None:
        """The upstream failed: release what the call reserved."""
        with self._lock:
            call = self._calls.pop(exchange.seq, None)
        if call is not None and call.run_id is not None:
            self.book.release(call.run_id, "the upstream failed; nothing was answered")

    def answer_first(self, exchange: Exchange) -> bool:
        """A sync paid call is settled once its answer has gone back (the pipeline does not
        wait on the ledger); a batch create is committed first, so the job is known before
        the pipeline can poll it."""
        return exchange.route in PAID_SYNC

    # -- pricing --------------------------------------------------------------------------

    def _today(self) -> dt.date:
        return self.book.clock().date()

    def _price(  # noqa: PLR0911 - one return per kind of call
        self, exchange: Exchange, body: bytes
    ) -> tuple[Priced | None, list[ImageRequest], dict[str, Any]]:
        """(priced or None when not an image call, the sync requests, meta for the run)."""
        route = exchange.route
        at = self._today()
        content_type = exchange.headers.get("content-type", "")
        if route == "openai.images.edit" and "multipart" in content_type:
            lines = price.openai_body_line(
                "/v1/images/edits", price.edit_fields(content_type, body)
            )
            return self._sync(lines, "openai", None, at)
        data = _json(body)
        if route in ("openai.images.generate", "openai.images.edit"):
            url = "/v1/images/generations" if route.endswith("generate") else "/v1/images/edits"
            return self._sync(price.openai_body_line(url, data), "openai", None, at)
        model = exchange.params.get("model")
        if route in ("gemini.generate", "gemini.stream"):
            if not self._is_image_model(model, at):
                return None, [], {}
            return self._sync(price.gemini_body_lines(data), "gemini", model, at)
        if route == "openai.batches.create":
            if data.get("endpoint") not in OPENAI_URLS:
                return None, [], {}
            file_id = str(data.get("input_file_id") or "")
            return self._file(exchange.provider, file_id, "openai", None, at)
        found = data.get("batch")
        batch: dict[str, Any] = found if isinstance(found, dict) else data
        config = batch.get("inputConfig") or batch.get("input_config") or {}
        if not self._is_image_model(model, at):
            return None, [], {}
        inline = config.get("requests")
        if isinstance(inline, dict):
            items = inline.get("requests") or []
            lines = price.gemini_inline_lines(items)
            priced = price.price_lines(
                io.BytesIO(lines), "gemini", self.rates, at, "batch", model=model
            )
            return priced, [], self._job_meta(lines, "gemini", model, at) | {"kind": "inline"}
        file_name = str(config.get("fileName") or config.get("file_name") or "")
        return self._file("gemini", file_name, "gemini", model, at)

    def _is_image_model(self, model: str | None, at: dt.date) -> bool:
        if not model:
            return False
        try:
            self.rates.resolve(model, at)
        except Exception:  # noqa: BLE001 - unknown to the cards
            if "image" in model:
                msg = f"model {model!r} is not on the rate cards, so its calls cannot be priced"
                raise UnpriceableError(msg) from None
            return False
        return True

    def _sync(
        self, lines: bytes, fmt: str, model: str | None, at: dt.date
    ) -> tuple[Priced, list[ImageRequest], dict[str, Any]]:
        kind: Format = "openai" if fmt == "openai" else "gemini"
        priced, requests = price.price_sync(lines, kind, self.rates, at, "standard", model=model)
        first = requests[0]
        meta = {"kind": "sync", "size": first.size, "quality": first.quality}
        return priced, requests, meta

    def _job_meta(self, lines: bytes, fmt: str, model: str | None, at: dt.date) -> dict[str, Any]:
        requests = price.requests_of(lines, fmt, self.rates, at, model=model)  # type: ignore[arg-type]
        return self._shape(requests)

    @staticmethod
    def _shape(requests: list[ImageRequest]) -> dict[str, Any]:
        sizes = {(r.size, r.quality) for r in requests}
        size, quality = sizes.pop() if len(sizes) == 1 else (requests[0].size, requests[0].quality)
        images = sum(len(r.images) for r in requests)
        return {"size": size, "quality": quality, "input_images": images}

    def _file(
        self, provider: str, file_id: str, fmt: str, model: str | None, at: dt.date
    ) -> tuple[Priced, list[ImageRequest], dict[str, Any]]:
        path = self.uploads.get(provider, file_id)
        if path is None:
            base = "OPENAI_BASE_URL" if provider == "openai" else "GOOGLE_GEMINI_BASE_URL"
            msg = (
                f"costguard guard: the batch input file {file_id!r} was not uploaded through "
                f"this gateway, so its requests cannot be priced; upload it with the SDK "
                f"pointed at the gateway ({base}) and create the batch from that upload, or "
                "start the gateway with --allow-unpriced"
            )
            raise UnpriceableError(msg)
        with path.open("rb") as handle:
            priced = price.price_lines(handle, fmt, self.rates, at, "batch", model=model)  # type: ignore[arg-type]
        with path.open("rb") as handle:
            first = next(iter(handle), b"")
        shape = self._shape(price.requests_of(first, fmt, self.rates, at, model=model))  # type: ignore[arg-type]
        shape["input_images"] = priced.input_images
        return priced, [], shape | {"kind": "file", "input_file": file_id}

    def _unpriced(self, exchange: Exchange, body: bytes, reason: str) -> Response | bytes:
        with self._lock:
            self._calls.pop(exchange.seq, None)
        if self.options.allow_unpriced:
            self.log(f"UNPRICED {exchange.route} forwarded (--allow-unpriced): {reason}")
            exchange.note = "unpriced: forwarded (--allow-unpriced)"
            return body
        exchange.note = "refused: cannot be priced"
        message = (
            reason
            if reason.startswith("costguard guard")
            else (f"costguard guard: this call cannot be priced, so it was not sent: {reason}")
        )
        return refusal(exchange.provider, UNPRICED_STATUS, message, code="costguard_unpriceable")

    # -- after ----------------------------------------------------------------------------

    def _after_paid(self, call: _Call, status: int, answer: Any, body: dict[str, Any]) -> None:
        run_id = call.run_id
        assert run_id is not None
        exchange = call.exchange
        if status != 200 or (answer is None and exchange.route != "gemini.stream"):
            self.book.release(run_id, f"the provider answered {status}; nothing billed")
            return
        if exchange.route in PAID_BATCH:
            job = str(answer.get("id") or answer.get("name") or "")
            job = job.removeprefix("batches/")
            self.book.annotate(run_id, job=job)
            with self._lock:
                self._jobs[exchange.provider, job] = run_id
            self.log(f"admitted batch {job} as {run_id}")
            return
        self._settle_sync(call, answer, body)

    def _settle_sync(self, call: _Call, answer: Any, body: dict[str, Any]) -> None:
        run_id = call.run_id
        assert run_id is not None
        assert call.priced is not None
        at = self._today()
        request = call.requests[0]
        route = call.exchange.route
        if route.startswith("openai"):
            outcome = openai_wire.parse_line(
                {"custom_id": "call", "response": {"status_code": 200, "body": answer}}
            )
            usage, ok = outcome.usage, outcome.status == "ok"
        elif route == "gemini.generate":
            outcome = gemini_wire.parse_response("call", answer)
            usage, ok = outcome.usage, outcome.status == "ok"
        else:
            usage, ok = _stream_usage(body.get("raw")), True
        if usage is None:
            amount = call.priced.maximum
            self.book.settle(
                run_id, amount, status="completed", how="no usage: maximum", reconciled=False
            )
            return
        amount = price.actual_cost(self.rates, at, "standard", request, usage, ok=ok)
        self.book.settle(run_id, amount, status="completed", how="response usage")

    def _openai_uploaded(self, record: dict[str, Any], status: int, answer: Any) -> None:
        spooled = record["request"]["body"] or {}
        spool = Path(spooled["spool"]) if "spool" in spooled else None
        if spool is None:
            return
        if status != 200 or not isinstance(answer, dict) or not answer.get("id"):
            spool.unlink(missing_ok=True)
            return
        out = self.uploads.new_path("openai-input.jsonl")
        fields = self.uploads.cut_multipart(spool, spooled.get("content_type", ""), out)
        if "file" in fields and fields.get("purpose", "batch") == "batch":
            self.uploads.add("openai", str(answer["id"]), out)
        else:
            out.unlink(missing_ok=True)

    def _gemini_uploaded(self, call: _Call, status: int, answer: Any) -> None:
        upload_id = call.exchange.query.get("upload_id", [""])[0]
        if not upload_id:
            return
        final = isinstance(answer, dict) and isinstance(answer.get("file"), dict)
        if status == 200 and final:
            name = str(answer["file"].get("name") or "")
            self.uploads.add("gemini", name, self.uploads.chunk_path(upload_id))
        elif status != 200:
            self.uploads.chunk_path(upload_id).unlink(missing_ok=True)

    def run_of(self, provider: str, job: str) -> Run | None:
        """The open run of a job: one this gateway admitted or resumed, else one another
        gateway on the same ledger and budget admitted (looked up in the ledger by job id,
        then polled and settled here too)."""
        with self._lock:
            run_id = self._jobs.get((provider, job))
        if run_id is None:
            if not job:
                return None
            for found in self.book.open_runs():
                meta = found.meta
                if str(meta.get("job") or "") == job and meta.get("provider") == provider:
                    with self._lock:
                        self._jobs[provider, job] = found.run_id
                    return found
            return None
        run = self.book.ledger.run(run_id)
        if run is None or not run.open:
            with self._lock:
                self._jobs.pop((provider, job), None)
            return None
        return run

    def seen_batch(self, provider: str, job: str, answer: Any) -> None:
        """A batch object passed through (or the poller fetched it): settle if terminal."""
        run = self.run_of(provider, job)
        if run is None or not isinstance(answer, dict):
            return
        facts = jobs.Facts.of(run.estimate, run.meta)
        at = self._today()
        if provider == "openai":
            verdict = jobs.openai_verdict(answer, facts, self.rates, at)
            for name in ("output_file_id", "error_file_id"):
                if answer.get(name):
                    self._results["openai", str(answer[name])] = job
        else:
            verdict = jobs.gemini_verdict(answer, facts, self.rates, at)
        if verdict is None:
            return
        if verdict.actual is not None:
            self.book.settle(run.run_id, verdict.actual, status=verdict.status, how=verdict.how)
            self.log(f"settled batch {job} ({verdict.status}) at {usd(verdict.actual)}")
            return
        if "terminal_at" not in run.meta:
            self.book.annotate(
                run.run_id,
                terminal_at=self.book.clock().isoformat(),
                terminal_status=verdict.status,
                fallback_usd=verdict.fallback,
                fallback_how=verdict.how,
            )

    def _results_passed(
        self, call: _Call, status: int, body: dict[str, Any], *, complete: bool
    ) -> None:
        spool = Path(body["spool"]) if "spool" in body else None
        try:
            provider = call.exchange.provider
            run = self.run_of(provider, call.job or "")
            if spool is None or run is None or status != 200 or not complete:
                return
            lines = []
            with spool.open("rb") as handle:
                for raw in handle:
                    if raw.strip():
                        lines.append(json.loads(raw))
            facts = jobs.Facts.of(run.estimate, run.meta)
            cost = jobs.results_cost(provider, lines, facts, self.rates, self._today())
            if cost is None:
                return
            ended = str(run.meta.get("terminal_status") or "completed")
            self.book.settle(run.run_id, cost, status=ended, how="results passed through")
        finally:
            if spool is not None:
                spool.unlink(missing_ok=True)

    # -- restart and grace -------------------------------------------------------------------

    def open_jobs(self) -> list[tuple[str, str]]:
        """(provider, job id) of the batch jobs this gateway admitted or resumed, still open."""
        with self._lock:
            return list(self._jobs)

    def resume(self) -> list[Run]:
        """Take up the open batch jobs of this budget's gateway runs from the ledger."""
        found = self.book.open_runs()
        with self._lock:
            for run in found:
                job = run.meta.get("job")
                if job:
                    self._jobs[str(run.meta.get("provider")), str(job)] = run.run_id
        return found

    def settle_overdue(self, now: dt.datetime) -> None:
        """Settle runs past their grace period at their fallback (unreconciled)."""
        grace = dt.timedelta(seconds=self.options.grace_s)
        for run in self.book.open_runs():
            meta = run.meta
            seen = meta.get("terminal_at")
            if seen and dt.datetime.fromisoformat(seen) + grace <= now:
                amount = Decimal(str(meta.get("fallback_usd") or run.estimate))
                self.book.settle(
                    run.run_id,
                    amount,
                    status=str(meta.get("terminal_status") or "completed"),
                    how=str(meta.get("fallback_how") or "estimate"),
                    reconciled=False,
                )
                self.log(f"settled {run.run_id} unreconciled at {usd(amount)}")
            elif not meta.get("job") and run.created + _NO_ANSWER + grace <= now:
                # a sync call never answered, or a batch whose job id was never recorded (the
                # gateway stopped after forwarding the create): nothing can tell what it cost
                # now, so it is settled at its maximum rather than held forever.
                sync = meta.get("kind") == "sync"
                self.book.settle(
                    run.run_id,
                    run.estimate,
                    status="completed",
                    how="no answer seen (gateway stopped mid-call): maximum"
                    if sync
                    else "no job id recorded (gateway stopped mid-create): maximum",
                    reconciled=False,
                )
                self.log(f"settled {run.run_id} unreconciled at its maximum {usd(run.estimate)}")

    def close(self) -> None:
        """Remove the spooled uploads."""
        self.uploads.close()


_NO_ANSWER = dt.timedelta(minutes=30)
"""How long a gateway run may go without its answer (sync) or its job id (batch) before
`settle_overdue` settles it at its maximum, after the grace period."""


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        msg = "the request body is not JSON"
        raise UnpriceableError(msg) from None
    if not isinstance(data, dict):
        msg = "the request body is not a JSON object"
        raise UnpriceableError(msg)
    return data


def _stream_usage(raw: object) -> Any:
    """The usage of a streamed generateContent answer (server-sent events): the last chunk's
    `usageMetadata`, with the images of every chunk; None when it cannot be read."""
    if not isinstance(raw, bytes):
        return None
    usage = None
    images = 0
    for line in raw.splitlines():
        if not line.startswith(b"data:"):
            continue
        try:
            chunk = json.loads(line[5:])
        except ValueError:
            continue
        outcome = gemini_wire.parse_response("call", chunk)
        images += len(outcome.images)
        if outcome.usage is not None:
            usage = outcome.usage
    return None if usage is None else usage._replace(images=images)


def create_guard_app(
    guard: Guard,
    *,
    log: Callable[[str], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Starlette:
    """The ASGI app of a gateway: the proxy core gated by `guard`."""
    return create_proxy_app(
        guard,
        log=log,
        on_stop=on_stop,
        gate=guard,
        max_body=guard.options.max_body,
        name="costguard guard",
    )
