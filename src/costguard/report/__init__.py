"""A run's report: its facts (JSON) and the self-contained HTML page made from them.

`costguard report RUN` and the end of every `run` / `collect` write `report.html` in the run's
output folder: a contact sheet of thumbnails grouped by status, the cost against the
estimate, the budget's spend over time, and what to retry.
"""
