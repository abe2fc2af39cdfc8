"""The OpenAI API's size limits, as one value a test can replace to reach them cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpenAILimits:
    """The API's size limits (tests lower them to exercise the errors cheaply)."""

    max_file_bytes: int = 512 * 1024 * 1024
    max_batch_input_bytes: int = 200 * 1024 * 1024
    max_requests: int = 50_000
    max_metadata_pairs: int = 16
    max_metadata_key: int = 64
    max_metadata_value: int = 512
    max_errors_listed: int = 1000
    """How many validation errors a failed batch lists (the rest are counted, not listed)."""
