"""One run: plan -> guard -> reserve -> submit -> poll -> collect -> reconcile, resumable.

`runner.py` drives the stages; the journal (`journal.py`) owns the run's state machine."""
