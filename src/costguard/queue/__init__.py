"""Queues: the three input formats read as a stream (`reader.py`), and pricing a queue file
(`estimate.py`) with the pure engine in `costguard.pricing`."""
