"""Recordings of real provider traffic: the on-disk format and scrubbing (`format.py`), the
recording proxy (`record.py`) and replaying a recording through the simulator (`replay.py`)."""
