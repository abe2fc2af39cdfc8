"""What the runner needs from a provider, whatever its API: one batch job's life, and sync calls.

Providers translate between costguard's `ImageRequest`/`Outcome` and a wire format, through
the official SDKs (imported lazily). They never price anything: they report usage.
"""

from __future__ import annotations

import base64
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from costguard.errors import ProviderError
from costguard.media import HEAD_BYTES, sniff
from costguard.models import ImageRequest, Usage
from costguard.providers.states import TERMINAL, JobState

T = TypeVar("T")

Status = Literal["ok", "refused", "failed", "expired", "cancelled"]


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A batch job's state as the provider reports it."""

    state: JobState
    """In costguard's words (`providers/states.py`), the same for every provider."""
    raw_state: str
    """The provider's own name for the state (`JOB_STATE_RUNNING`, `finalizing`, ...)."""
    total: int | None = None
    """Requests in the job; None when the provider did not say (unknown, not zero)."""
    completed: int | None = None
    """Requests that succeeded so far; None when unknown."""
    failed: int | None = None
    """Requests that failed so far; None when unknown."""
    error: str | None = None
    """Why the job failed, when the provider says."""
    quota: bool = False
    """The job failed because the provider's quota could not hold it (OpenAI's
    `token_limit_exceeded` at validation): nothing ran, nothing is billed, it may be sent
    again once earlier jobs finish."""
    quota_limit: int | None = None
    """The enqueued-token limit the provider's message named, when it named one."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(slots=True)
class Outcome:
    """What became of one request."""

    key: str
    status: Status
    images: list[tuple[bytes, str]] = field(default_factory=list)
    """(image bytes, mime type) in the order returned."""
    reason: str | None = None
    """Finish reason, block reason, or error code and message."""
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    """A job the provider accepted."""

    job_id: str
    input_file_id: str | None = None


class Provider(Protocol):
    """One provider's batch and sync APIs."""

    name: str

    def find_job(self, tag: str) -> str | None:
        """The id of a job created earlier with `tag` (display name / metadata), if any."""
        ...

    def submit(
        self, model: str, requests: Iterable[ImageRequest], tag: str, workdir: Path
    ) -> SubmittedJob:
        """Create one batch job for `requests` (all for `model`), tagged with `tag`."""
        ...

    def status(self, job_id: str) -> JobStatus:
        """Poll the job."""
        ...

    def results(self, job_id: str, workdir: Path, *, keep: bool = False) -> Iterator[Outcome]:
        """Stream the outcomes the provider returned (only the requests it answered).

        With `keep`, the raw result files are kept in `workdir` (`--keep-raw`)."""
        ...

    def cancel(self, job_id: str) -> None:
        """Ask the provider to cancel the job."""
        ...

    def generate(self, request: ImageRequest) -> Outcome:
        """One synchronous call (full price)."""
        ...


def read_image(ref: str, base: Path) -> tuple[bytes, str] | None:
    """Bytes and type of an input image given inline: a local file or a `data:` URL.

    None for a URI the provider fetches itself. The type comes from the bytes, not the name
    (the queue reader has refused anything the provider does not take).
    """
    if ref.startswith("data:"):
        header, _, data = ref.partition(",")
        mime = header.removeprefix("data:").removesuffix(";base64")
        return decode_base64(data), mime
    if ref.startswith(("http://", "https://", "gs://", "file-", "files/")):
        return None
    path = Path(ref) if Path(ref).is_absolute() else base / ref
    content = path.read_bytes()
    return content, sniff(content[:HEAD_BYTES]) or "application/octet-stream"


def decode_base64(text: str | bytes) -> bytes:
    """Base64 in the standard or URL-safe alphabet, padded or not (as protobuf JSON takes it).

    Decoded with pybase64 (SIMD): a 2 MB image in about 0.2 ms, where CPython's binascii takes
    about 6 ms, which made decoding the slowest step of collecting an image.
    """
    import pybase64

    data = text.encode("ascii") if isinstance(text, str) else text
    if len(data) % 4:
        data = data.rstrip(b"=")
        data += b"=" * (-len(data) % 4)
    urlsafe = b"-" in data or b"_" in data
    return pybase64.b64decode(data, altchars=b"-_" if urlsafe else None, validate=True)


def data_url(data: bytes, mime: str) -> str:
    """A `data:` URL for inline image input."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


Translate = Callable[[BaseException], ProviderError | None]
"""A provider's reading of its SDK's exceptions: a ProviderError, or None (not the SDK's)."""

PROVIDER_CALLS = ("find_job", "submit", "status", "results", "cancel", "generate")
"""The `Provider` methods that call the provider."""

_SECRETS = re.compile(r"\b(?:sk-[\w*-]{6,}|AIza[\w-]{20,})|(?<=[?&]key=)[^&\s]+")


def scrub(text: str) -> str:
    """A provider's message with anything that looks like an API key (even masked) removed."""
    return _SECRETS.sub("***", text)


def translating(translate: Translate) -> Callable[[type[T]], type[T]]:
    """Class decorator: the provider's calls raise ProviderError instead of the SDK's errors.

    One line, no key, exit code 8, and whether the provider rejected the call (so the runner
    knows what was not accepted and can release its reservation).
    """

    def wrap(cls: type[T]) -> type[T]:
        for name in PROVIDER_CALLS:
            setattr(cls, name, _translated(getattr(cls, name), translate))
        return cls

    return wrap


def _translated(method: Callable[..., Any], translate: Translate) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(*args, **kwargs)
            except Exception as exc:
                mapped = translate(exc)
                if mapped is None:
                    raise
                raise mapped from exc

        return stream

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    return call
