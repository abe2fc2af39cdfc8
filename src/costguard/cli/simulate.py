"""`costguard simulate ...`: the simulator's commands. Imports the simulator lazily.

`costguard --help` stays fast: nothing here imports the SDKs, uvicorn or respx until a command
runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.cli.common import SummaryOutput
from costguard.cli.output import emit, report
from costguard.cli.serving import announce as _announce
from costguard.cli.serving import clear_ready_file as _clear
from costguard.cli.serving import removed_at_exit as _removed_at_exit
from costguard.cli.serving import warn_if_public as _warn_if_public
from costguard.cli.serving import where as _where
from costguard.errors import CostguardError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from costguard.simulator.server import Listening

MAX_PORT = 65535

simulate_app = typer.Typer(
    help="Offline simulators of the Gemini and OpenAI batch + files APIs.",
    no_args_is_help=True,
)


RecordOutput = Annotated[
    SummaryOutput,
    typer.Option(
        help='table: the banner for people; json: one line per event on stdout ({"event": '
        '"listening", "url", ...} once listening, {"event": "stopped", ...} when stopped; '
        "--log lines go to stderr)."
    ),
]


def _fail(exc: CostguardError) -> typer.Exit:
    """Show `exc` as every command does (stderr; JSON with --output json) and exit with its
    code, also when the command runs outside `costguard.cli.app.run` (Typer's own runner)."""
    return typer.Exit(report(exc))


def _check_port(port: int) -> None:
    """Refuse a port TCP does not have (exit 2) before anything is started."""
    if not 0 <= port <= MAX_PORT:
        message = f"--port {port}: use a port in 0..{MAX_PORT} (0 picks a free one)"
        raise _fail(UsageError(message))


def _event(event: str, listening: Listening | None = None, **fields: object) -> None:
    """One JSON Lines event of `record --output json` on stdout (`listening`: where, as
    `serve --output json` says it)."""
    where = _where(listening) if listening is not None else {}
    emit({"event": event, **where, **fields}, indent=None)


def _log(output: SummaryOutput, log: bool) -> Callable[[str], None] | None:
    """Where `--log` lines go: stdout, or stderr when stdout carries JSON events."""
    if not log:
        return None
    if output is SummaryOutput.json:
        return lambda line: typer.echo(line, err=True)
    return typer.echo


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
        raise _fail(exc) from None
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

    try:
        with _removed_at_exit(ready_file):
            run_server(sim, host=host, port=port, ready=ready, log=_log(output, log))
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}; try --port 0"
        raise _fail(UsageError(message)) from None


def _readiness(listening: Listening, scenario: str, state: Path | None) -> dict[str, object]:
    """What `--ready-file` and `--output json` say once the server listens."""
    return _where(listening) | {
        "scenario": scenario,
        "state": None if state is None else str(state),
    }


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
    output: RecordOutput = SummaryOutput.table,
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
        raise _fail(exc) from None

    def ready(listening: Listening) -> None:
        _warn_if_public(
            listening,
            "the recording proxy is reachable from other machines and forwards their requests",
        )
        if output is SummaryOutput.json:
            _event("listening", listening, upstreams=recorder.upstreams, out=str(out))
            return
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
        if output is SummaryOutput.json:
            _event("stopped", exchanges=recorder.count, summary=recorder.summary(), out=str(out))
            return
        typer.echo(f"costguard-record: {recorder.summary()} written to {out}")

    try:
        run_proxy(
            recorder,
            host=host,
            port=port,
            ready=ready,
            log=_log(output, log),
            on_stop=stopped,
        )
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}; try --port 0"
        raise _fail(UsageError(message)) from None


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
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
) -> None:
    """List the built-in scenarios and recordings found, with a one-line description each.

    Example: costguard simulate scenarios --dir recordings/
    """
    from costguard.simulator.recording.format import find_recordings
    from costguard.simulator.scenario import builtin_names, load_scenario

    found: list[dict[str, object]] = [
        {"name": sc.name, "kind": "builtin", "description": sc.description, "path": None}
        for sc in map(load_scenario, builtin_names())
    ]
    seen: set[Path] = set()
    for place in [*(folder or []), _recordings_home()]:
        for path, manifest in find_recordings(place):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            unreadable = isinstance(manifest, str)
            found.append(
                {
                    "name": path.name if isinstance(manifest, str) else manifest.name,
                    "kind": "recording",
                    "description": None if isinstance(manifest, str) else manifest.description,
                    "path": str(path),
                }
                | ({"error": manifest} if unreadable else {})
            )
    if output is SummaryOutput.json:
        emit(found)
        return
    width = max(len(str(row["name"])) for row in found)
    for row in found:
        if row["kind"] == "builtin":
            text = row["description"]
        elif "error" in row:
            text = f"unreadable recording: {row['error']}"
        else:
            text = f"recording: {row['description']} ({row['path']})"
        typer.echo(f"{row['name']!s:<{width}}  {text}")
