"""Where the shipped data lives: rate cards (`pricing/`) and simulator fixtures (`fixtures/`).

In a wheel they are package data under `costguard/_data/`; in a source checkout (editable
install) they are the top-level `pricing/` and `fixtures/` folders of the repository.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def home_dir() -> Path:
    """costguard's home (ledger, run journals, recordings): `COSTGUARD_HOME`, else the user
    data directory."""
    home = os.environ.get("COSTGUARD_HOME", "")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("costguard"))


def data_dir(name: str) -> Path:
    """The shipped folder `name` (`pricing` or `fixtures`)."""
    packaged = Path(str(files("costguard"))) / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.is_dir():
        return checkout
    msg = f"costguard's {name}/ folder is missing from this installation (looked in {packaged})"
    raise FileNotFoundError(msg)
