"""pytest plugin (entry point `pytest11`): the `costguard_sim` fixture.

    def test_expiry(costguard_sim):                       # default scenario: succeeded
        ...any OpenAI / Gemini SDK code, no network...
        assert costguard_sim.calls.count("openai.batches.create") == 1

    @pytest.mark.costguard_scenario("expired")            # or a YAML path, or a recording
    def test_expired(costguard_sim): ...

    @pytest.mark.parametrize("costguard_sim", ["expired", "cancelled"], indirect=True)
    def test_each(costguard_sim): ...

The marker also takes `api_keys=[...]` and `base_urls=[...]` (see `costguard.simulate`). The
fixture is function-scoped and in-process; at teardown it fails the test if a request matched
no simulated route. The simulator is imported only when the fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from costguard.simulator import Simulator

MARKER = "costguard_scenario"


def pytest_configure(config: pytest.Config) -> None:
    """Register the `costguard_scenario` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(name, *, api_keys=None, base_urls=()): the scenario (built-in name, "
        "YAML path or recording folder) and options of the costguard_sim fixture",
    )


@pytest.fixture
def costguard_sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """An in-process simulator answering every OpenAI and Gemini SDK call of the test."""
    from costguard.simulator import simulate

    options: dict[str, Any] = {}
    scenario: str | None = None
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        options.update(marker.kwargs)
        scenario = marker.args[0] if marker.args else options.pop("name", None)
    param = getattr(request, "param", None)
    if param is not None:
        scenario = str(param)
    with simulate(scenario, **options) as sim:
        yield sim
