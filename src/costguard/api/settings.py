"""Settings from the environment (`COSTGUARD_*`): the defaults of the CLI and the Python API."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from costguard.errors import UsageError


class Settings(BaseSettings):
    """costguard's environment settings; CLI options override them."""

    model_config = SettingsConfigDict(env_prefix="COSTGUARD_", extra="ignore")

    home: Path | None = None
    """Where costguard keeps its ledger and runs (default: the user data directory)."""
    pricing_dir: str | None = None
    """Extra rate-card folders (os.pathsep-separated); their cards win for the same date."""
    default_model: str | None = None
    """Model for queue lines that name none, when --model is not given."""
    ledger: str | None = None
    """Ledger file (default: <home>/ledger.sqlite3); `--ledger` overrides it."""
    ledger_url: str | None = None
    """A shared ledger, `postgresql://user:password@host/db`; wins over `ledger`."""
    budget: str | None = None
    """The budget `run` charges when --budget is not given; it must be set in the ledger."""
    calibrated: str | None = None
    """`1`/`true`/`yes`/`on`: `estimate` and `run` are calibrated unless `--no-calibrated`
    (`0`/`false`/`no`/`off`, or unset: only with `--calibrated`). Read by `calibrated_default`."""
    calibration_since: str | None = None
    """The first day (or a span back, like 90d) a calibrated estimate learns from."""
    max_enqueued_tokens: str | None = None
    """Per model, the provider's enqueued-token quota, `MODEL=N[,MODEL=N...]`, for `run` and
    `collect` when `--max-enqueued-tokens` does not name that model."""
    max_requests_per_part: str | None = None
    """`run` splits batch parts at this many requests when `--max-requests-per-part` is not
    given."""

    def quota_limits(self, given: list[str] | None) -> dict[str, int]:
        """`--max-enqueued-tokens` items over `max_enqueued_tokens`, as a dict.

        Raises:
            UsageError: an item is not MODEL=N, naming the option or the setting.
        """
        from costguard.execution.quota import parse_limits

        limits: dict[str, int] = {}
        for where, values in (
            ("COSTGUARD_MAX_ENQUEUED_TOKENS", [self.max_enqueued_tokens or ""]),
            ("--max-enqueued-tokens", given or []),
        ):
            try:
                limits |= parse_limits([v for v in values if v.strip()])
            except ValueError as exc:
                raise UsageError(f"{where}: {exc}") from None
        return limits

    def part_size(self, given: int | None) -> int | None:
        """`--max-requests-per-part`, else `max_requests_per_part`, else None.

        Raises:
            UsageError: the setting is not a whole number of 1 or more.
        """
        if given is not None:
            return given
        text = (self.max_requests_per_part or "").strip().replace("_", "")
        if not text:
            return None
        if not text.isdigit() or int(text) < 1:
            msg = (
                f"COSTGUARD_MAX_REQUESTS_PER_PART={self.max_requests_per_part!r} is not a "
                "whole number of 1 or more"
            )
            raise UsageError(msg)
        return int(text)

    def ledger_location(self, given: str | None = None) -> str | None:
        """The ledger to open: `given` (`--ledger`), else `ledger_url`, else `ledger`.

        None means the default file, `<home>/ledger.sqlite3`.
        """
        for location in (given, self.ledger_url, self.ledger):
            if location and location.strip():
                return location.strip()
        return None

    def calibrated_default(self) -> bool:
        """`calibrated` as a yes or no; anything else is refused, naming the setting.

        Raises:
            UsageError: `COSTGUARD_CALIBRATED` is set to something that is not a yes or no.
        """
        text = (self.calibrated or "").strip().lower()
        if text in ("", "0", "false", "no", "off"):
            return False
        if text in ("1", "true", "yes", "on"):
            return True
        msg = (
            f"COSTGUARD_CALIBRATED={self.calibrated!r} is not a yes or no; "
            "use 1, true, yes, on (or 0, false, no, off)"
        )
        raise UsageError(msg)

    def pricing_dirs(self) -> list[Path]:
        """`pricing_dir` split into folders."""
        if not self.pricing_dir:
            return []
        return [Path(p) for p in self.pricing_dir.split(os.pathsep) if p]
