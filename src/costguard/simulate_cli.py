"""`costguard simulate ...`: the simulator's commands. Imports the simulator lazily.

`costguard --help` stays fast: nothing here imports the SDKs, uvicorn or respx until a command
runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from costguard.errors import CostguardError

simulate_app = typer.Typer(
    help="Offline simulators of the Gemini and OpenAI batch + files APIs.",
    no_args_is_help=True,
)


def _fail(exc: Exception, code: int) -> typer.Exit:
    typer.echo(f"costguard: {exc}", err=True)
    return typer.Exit(code)


@simulate_app.command()
def serve(
    *,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = 8765,
    scenario: Annotated[
        str, typer.Option(help="Default scenario: a built-in name or a YAML file.")
    ] = "succeeded",
    state: Annotated[
        Path | None,
        typer.Option(help="State file: loaded when it exists, saved after every request."),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="Accept only this key (repeatable); default: any key."),
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Print one line per request.")] = False,
) -> None:
    """Serve the simulated OpenAI and Gemini APIs over HTTP until Ctrl-C.

    Example: costguard simulate serve --port 0 --scenario expired --state sim.json
    """
    from costguard.simulator import Simulator
    from costguard.simulator.scenario import builtin_names
    from costguard.simulator.server import serve as run_server

    resumed = state is not None and state.exists()
    try:
        if state is not None and resumed:
            sim = Simulator.load(state, api_keys=api_key)
        else:
            sim = Simulator(scenario, api_keys=api_key)
    except CostguardError as exc:
        raise _fail(exc, exc.exit_code) from None
    if state is not None:
        sim.autosave = state
        sim.save(state)

    def ready(base_url: str) -> None:
        names = ", ".join(builtin_names())
        lines = [
            f"costguard-sim: listening on {base_url} (default scenario: {sim.scenario.name})",
            "Point the SDKs at it (any API key works unless --api-key is given):",
            f"  export OPENAI_BASE_URL={base_url}/v1",
            f"  export GOOGLE_GEMINI_BASE_URL={base_url}",
            (
                'Per-job scenario: OpenAI batches.create(metadata={"cg_scenario": "expired"}); '
                "Gemini: a display name containing cg_scenario=expired"
            ),
            f"Scenarios: {names} (costguard simulate scenarios)",
        ]
        if state is not None:
            how = "resumed from it" if resumed else "new"
            lines.append(f"State: {state} ({how}; saved after every request)")
        lines.append("Stop with Ctrl-C.")
        typer.echo("\n".join(lines))

    try:
        run_server(sim, host=host, port=port, ready=ready, log=typer.echo if log else None)
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}; try --port 0"
        raise _fail(OSError(message), 2) from None


@simulate_app.command()
def scenarios() -> None:
    """List the built-in scenarios with a one-line description each.

    Example: costguard simulate scenarios
    """
    from costguard.simulator.scenario import builtin_names, load_scenario

    loaded = [load_scenario(name) for name in builtin_names()]
    width = max(len(sc.name) for sc in loaded)
    for sc in loaded:
        typer.echo(f"{sc.name:<{width}}  {sc.description}")
