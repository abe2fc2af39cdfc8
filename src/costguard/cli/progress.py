"""Where `run` and `collect` show progress: a live table on a terminal, plain lines elsewhere.

`progress_reporter()` is a context manager: on a terminal (stderr, as rich sees it: not
redirected, not `TERM=dumb`) it draws a live table that is taken down, and the cursor shown
again, on every way out of the block: success, an error (over budget, a provider refusing),
Ctrl-C. Elsewhere (CI logs, pipes) progress is plain lines (`run/progress.py` `LineReporter`).
rich honours `NO_COLOR`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import typer

from costguard.execution.progress import (
    LineReporter,
    Reporter,
    Snapshot,
    clock_text,
    count_text,
    money_text,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


class LiveDisplay:
    """A live table of a run's parts on a terminal (stderr); messages print above it.

    Use it as a context manager: leaving the block by any way stops the display and shows the
    cursor again. Its elapsed time moves on its own (four redraws a second) between reports;
    a part changing state or finishing its collection is drawn at once, so even a stage that
    lasts less than a redraw is seen.
    """

    def __init__(self, console: Console, *, verbose: bool = False, label: str = "") -> None:
        from rich.live import Live

        self.console = console
        self.verbose = verbose
        self.label = label
        self._snapshot: Snapshot | None = None
        self._drawn: tuple[tuple[str, bool], ...] = ()
        """Per part, the state and whether all its results are in, as last drawn."""
        self._started = time.monotonic()
        self._live = Live(
            console=console,
            get_renderable=self._render,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
        )

    def __enter__(self) -> LiveDisplay:
        self._started = time.monotonic()
        self._live.start(refresh=True)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Take the display down and show the cursor (again: harmless)."""
        self._live.stop()

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, emoji=False)

    def progress(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        stages = tuple((p.state, p.collected == p.total) for p in snapshot.parts)
        if stages != self._drawn and self._live.is_started:
            self._drawn = stages
            self._live.refresh()

    def done(self) -> None:
        """The run is no longer driven: its summary follows, without the display."""
        self.stop()

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        elapsed = clock_text(time.monotonic() - self._started)
        snapshot = self._snapshot
        if snapshot is None:
            return Text(f"{self.label}  {elapsed}  preparing", no_wrap=True)
        head = [snapshot.run_id, elapsed]
        if snapshot.collected or snapshot.collecting:
            head.append(f"collected {snapshot.collected:,}/{snapshot.requests:,}")
        head.append(money_text(snapshot))
        if snapshot.eta is not None:
            head.append(f"eta {clock_text(snapshot.eta)}")
        table = Table(box=None, pad_edge=False)
        columns = ["part", "state", "provider state"] if self.verbose else ["part", "state"]
        for column in columns:
            table.add_column(column, no_wrap=True)
        for column in ("done", "failed", "of", "collected"):
            table.add_column(column, justify="right", no_wrap=True)
        for part in snapshot.parts:
            raw = [part.provider_state or "-"] if self.verbose else []
            table.add_row(
                part.id,
                part.state,
                *raw,
                count_text(part.done),
                count_text(part.failed),
                f"{part.total:,}",
                f"{part.collected:,}",
            )
        return Group(Text("  ".join(head), overflow="ellipsis", no_wrap=True), table)


@contextlib.contextmanager
def progress_reporter(*, verbose: bool = False, label: str = "") -> Iterator[Reporter]:
    """The reporter for this process's stderr, taken down on leaving the block.

    `verbose` adds the provider's own state names; `label` names the run until it reports.
    """
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal and not console.is_dumb_terminal:
        with LiveDisplay(console, verbose=verbose, label=label) as display:
            yield display
    else:
        yield LineReporter(lambda text: typer.echo(text, err=True), verbose=verbose)
