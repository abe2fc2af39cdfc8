"""Recordings of real provider traffic: the on-disk format (`format.py`) and its job index
(`index.py`), the recording proxy (`record.py`, on `costguard.proxy`), and replaying a recording
through the simulator (`replay.py` with `replay_*.py`)."""
