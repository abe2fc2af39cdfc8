"""`costguard simulate ...`: the simulator's commands. Imports the simulator lazily.

`costguard --help` stays fast: nothing here imports the SDKs, uvicorn or respx until a command
runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.cli.common import SummaryOutput
from costguard.errors import CostguardError, UsageError

if TYPE_CHECKING:
    from costguard.simulator.server import Listening

MAX_PORT = 65535

simulate_app = typer.Typer(
    help="Offline simulators of the Gemini and OpenAI batch + files APIs.",
    no_args_is_help=True,
)


def _fail(exc: Exception, code: int) -> typer.Exit:
    typer.echo(f"costguard: {exc}", err=True)
    return typer.Exit(code)


def _check_port(port: int) -> None:
    """Refuse a port TCP does not have (exit 2) before anything is started."""
    if not 0 <= port <= MAX_PORT:
        message = f"--port {port}: use a port in 0..{MAX_PORT} (0 picks a free one)"
        raise _fail(UsageError(message), UsageError.exit_code)


def _warn_if_public(listening: Listening, what: str) -> None:
    """One stderr line when `listening` is reachable from other machines (not loopback)."""
    if listening.loopback_only:
        return
    where = "all interfaces" if listening.all_interfaces else "a non-loopback address"
    typer.echo(
        f"costguard: warning: listening on {listening.bound} ({where}): {what}; "
        "bind 127.0.0.1 to keep it on this machine",
        err=True,
    )


def _recordings_home() -> Path:
    """`COSTGUARD_HOME/recordings` (the user data directory when COSTGUARD_HOME is unset)."""
    from costguard.resources import home_dir

    return home_dir() / "recordings"


def _resolve_scenario(scenario: str) -> str:
    """A built-in name or path as given; else a recording of that name under the home."""
    from costguard.simulator.scenario import builtin_names

    if scenario in builtin_names() or Path(scenario).exists():
        return scenario
    named = _recordings_home() / scenario
    return str(named) if (named / "recording.yaml").is_file() else scenario


@simulate_app.command()
def serve(
    *,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", help="Port to bind; 0 picks a free one.")
    ] = 8765,
    scenario: Annotated[
        str,
        typer.Option(
            metavar="SCENARIO",
            help="Default scenario: a built-in name, a YAML file, or a recording folder to "
            "replay (a recording's name under COSTGUARD_HOME/recordings works too).",
        ),
    ] = "succeeded",
    state: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="State file: loaded when it exists, saved after every request."
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            help="Accept only this key (repeatable); default: any key.",
        ),
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Print one line per request.")] = False,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            "--ready-file",
            metavar="FILE",
            help='Once listening, write {"url", "pid", ...} as JSON to FILE (atomically: it '
            "appears whole); removed when the server stops. For scripts and test harnesses.",
        ),
    ] = None,
    output: Annotated[
        SummaryOutput,
        typer.Option(
            help='table: the banner for people; json: one line {"event": "listening", "url", '
            '"pid", ...} on stdout once listening, and nothing else on stdout (--log lines go '
            "to stderr)."
        ),
    ] = SummaryOutput.table,
) -> None:
    """Serve the simulated OpenAI and Gemini APIs over HTTP until Ctrl-C (or SIGTERM).

    Example: costguard simulate serve --port 0 --scenario expired --state sim.json

    From a program: costguard simulate serve --port 0 --output json (read the first line of
    stdout), or --ready-file FILE (wait for FILE).
    """
    _check_port(port)
    _clear(ready_file)
    from costguard.simulator import Simulator
    from costguard.simulator.scenario import builtin_names
    from costguard.simulator.server import serve as run_server

    resumed = state is not None and state.exists()
    try:
        if state is not None and resumed:
            sim = Simulator.load(state, api_keys=api_key)
        else:
            sim = Simulator(_resolve_scenario(scenario), api_keys=api_key)
    except CostguardError as exc:
        raise _fail(exc, exc.exit_code) from None
    if state is not None:
        sim.autosave = state
        sim.save(state)

    def ready(listening: Listening) -> None:
        if api_key:
            what = "the simulator is reachable from other machines (only --api-key keys)"
        else:
            what = "the simulator is reachable from other machines and accepts any API key"
        _warn_if_public(listening, what)
        if _announce(_readiness(listening, sim.scenario.name, state), ready_file, output):
            return
        base_url = listening.base_url
        names = ", ".join(builtin_names())
        where = listening.describe()
        lines = [
            f"costguard-sim: listening on {where} (default scenario: {sim.scenario.name})",
            "Point the SDKs at it (any API key works unless --api-key is given):",
            f"  export OPENAI_BASE_URL={base_url}/v1",
            f"  export GOOGLE_GEMINI_BASE_URL={base_url}",
            (
                'Per-job scenario: OpenAI batches.create(metadata={"cg_scenario": "expired"}); '
                "Gemini: a display name containing cg_scenario=expired"
            ),
            f"Scenarios: {names} (costguard simulate scenarios)",
        ]
        if sim.replay is not None:
            jobs = len(sim.replay.manifest.jobs)
            lines.insert(
                1,
                f"Replaying recording {sim.replay.name!r} ({jobs} job{'s' if jobs != 1 else ''}) "
                f"from {sim.replay.folder}; anything else: {sim.scenario.name}",
            )
        if state is not None:
            how = "resumed from it" if resumed else "new"
            lines.append(f"State: {state} ({how}; saved after every request)")
        lines.append("Stop with Ctrl-C.")
        typer.echo("\n".join(lines))

    def log_line(line: str) -> None:
        typer.echo(line, err=output is SummaryOutput.json)  # stdout holds only JSON then

    try:
        with _removed_at_exit(ready_file):
            run_server(sim, host=host, port=port, ready=ready, log=log_line if log else None)
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}; try --port 0"
        raise _fail(OSError(message), 2) from None


def _clear(ready_file: Path | None) -> None:
    """Remove an earlier server's ready file before starting, so it never passes for this one's."""
    if ready_file is None:
        return
    try:
        ready_file.unlink(missing_ok=True)
    except OSError as exc:
        problem = UsageError(f"--ready-file {ready_file}: {exc.strerror or exc}")
        raise _fail(problem, UsageError.exit_code) from None


def _announce(where: dict[str, object], ready_file: Path | None, output: SummaryOutput) -> bool:
    """Write the ready file and, with `--output json`, the JSON line; True: print no banner."""
    if ready_file is not None:
        from costguard.run.files import write_atomic

        try:
            write_atomic(ready_file, (json.dumps(where) + "\n").encode())
        except OSError as exc:
            problem = UsageError(f"--ready-file {ready_file}: {exc.strerror or exc}")
            raise _fail(problem, UsageError.exit_code) from None
    if output is SummaryOutput.json:
        typer.echo(json.dumps({"event": "listening", **where}))
        return True
    return False


def _readiness(listening: Listening, scenario: str, state: Path | None) -> dict[str, object]:
    """What `--ready-file` and `--output json` say once the server listens."""
    return {
        "url": listening.base_url,
        "openai_base_url": f"{listening.base_url}/v1",
        "gemini_base_url": listening.base_url,
        "host": listening.host,
        "port": listening.port,
        "pid": os.getpid(),
        "scenario": scenario,
        "state": None if state is None else str(state),
    }


@contextlib.contextmanager
def _removed_at_exit(ready_file: Path | None) -> Iterator[None]:
    """Remove the ready file when the server stops: Ctrl-C, an error, or SIGTERM (which the
    server re-raises once shut down: the file is removed, then SIGTERM ends the process as
    before)."""
    if ready_file is None or threading.current_thread() is not threading.main_thread():
        try:
            yield
        finally:
            if ready_file is not None:
                _remove_own(ready_file)
        return

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        _remove_own(ready_file)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        _remove_own(ready_file)
        signal.signal(signal.SIGTERM, previous)


def _remove_own(ready_file: Path) -> None:
    """Remove the ready file if it is still this process's (not a newer server's)."""
    try:
        written = json.loads(ready_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(written, dict) and written.get("pid") == os.getpid():
        ready_file.unlink(missing_ok=True)


@simulate_app.command()
def record(
    *,
    upstream: Annotated[
        list[str],
        typer.Option(
            metavar="URL",
            help="Where requests go: https://api.openai.com, "
            "https://generativelanguage.googleapis.com or any base URL (a gateway, a "
            "costguard simulate serve). Repeat as openai=URL and gemini=URL to record both "
            "providers through one proxy.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(metavar="DIR", help="Folder to record into (must not hold one yet)."),
    ],
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", help="Port to bind; 0 picks a free one.")
    ] = 8766,
    shrink_images: Annotated[
        bool,
        typer.Option(
            "--shrink-images",
            help="Store small images of the same type instead of the base64 images in bodies "
            "(the client still gets the real ones).",
        ),
    ] = False,
    redact: Annotated[
        list[str] | None,
        typer.Option(
            "--redact",
            metavar="TEXT",
            help="Also scrub this text wherever it appears (repeatable).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Scenario name of the recording (default: the folder)."),
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Print one line per request.")] = False,
) -> None:
    """Record real traffic through a loopback proxy, for replay with serve --scenario OUT.

    Keys, auth headers, cookies and upload URLs are scrubbed before anything is written.
    Example: costguard simulate record --upstream https://api.openai.com --out rec/nightly
    Both providers: --upstream openai=https://api.openai.com
    --upstream gemini=https://generativelanguage.googleapis.com
    """
    _check_port(port)
    from costguard.simulator.recording.record import Recorder
    from costguard.simulator.recording.record import record as run_proxy

    per_provider = dict(u.split("=", 1) for u in upstream if re.match(r"(openai|gemini)=", u))
    plain = [u for u in upstream if not re.match(r"(openai|gemini)=", u)]
    try:
        if len(plain) > 1 or (plain and per_provider):
            msg = "--upstream: give one URL, or openai=URL and/or gemini=URL"
            raise UsageError(msg)
        recorder = Recorder(
            out,
            upstream=plain[0] if plain else per_provider,
            name=name,
            shrink=shrink_images,
            secrets=redact or (),
        )
    except CostguardError as exc:
        raise _fail(exc, exc.exit_code) from None

    def ready(listening: Listening) -> None:
        _warn_if_public(
            listening,
            "the recording proxy is reachable from other machines and forwards their requests",
        )
        base_url = listening.base_url
        where = listening.describe()
        lines = [
            f"costguard-record: forwarding {where} -> {recorder.upstream}, recording into {out}",
            "Point the SDKs at it (with your real keys; they are never written):",
            f"  export OPENAI_BASE_URL={base_url}/v1",
            f"  export GOOGLE_GEMINI_BASE_URL={base_url}",
            f"Replay later: costguard simulate serve --scenario {out}",
            "Stop with Ctrl-C.",
        ]
        typer.echo("\n".join(lines))

    def stopped() -> None:
        typer.echo(f"costguard-record: {recorder.summary()} written to {out}")

    try:
        run_proxy(
            recorder,
            host=host,
            port=port,
            ready=ready,
            log=typer.echo if log else None,
            on_stop=stopped,
        )
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}; try --port 0"
        raise _fail(OSError(message), 2) from None


@simulate_app.command()
def scenarios(
    folder: Annotated[
        list[Path] | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Also list recordings in this folder (repeatable); "
            "COSTGUARD_HOME/recordings is always searched.",
        ),
    ] = None,
) -> None:
    """List the built-in scenarios and recordings found, with a one-line description each.

    Example: costguard simulate scenarios --dir recordings/
    """
    from costguard.simulator.recording.format import find_recordings
    from costguard.simulator.scenario import builtin_names, load_scenario

    rows = [(sc.name, sc.description) for sc in map(load_scenario, builtin_names())]
    seen: set[Path] = set()
    for place in [*(folder or []), _recordings_home()]:
        for path, manifest in find_recordings(place):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            if isinstance(manifest, str):
                rows.append((path.name, f"unreadable recording: {manifest}"))
            else:
                rows.append((manifest.name, f"recording: {manifest.description} ({path})"))
    width = max(len(name) for name, _ in rows)
    for name, description in rows:
        typer.echo(f"{name:<{width}}  {description}")
