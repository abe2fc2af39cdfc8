"""costguard's Python API, re-exported from `costguard`: what a pipeline calls instead of
shelling out to the CLI.

- `estimating`: `estimate()` a queue and `price()` one image, from the rate cards
  (`Estimate`, `EstimateGroup`, `Price`, `Cost`); `requests` turns `ImageRequest`s, dicts or a
  path into the queue the reader reads, so every figure and every error is the CLI's.
- `budgets`: `Ledger.open()`, a `Budget` and its durable `Reservation`s (the same atomic
  admission as `run` and the gateway).
- `running`: `run()`, the whole create -> poll -> collect cycle in-process.
- `setup`: what the CLI and the API both build from the environment (rate book, ledger,
  providers, runner, the in-process simulator, the report).
- `settings`: the `COSTGUARD_*` environment settings.

Above the report, the runs, the simulator and the gateway; below the CLI, which uses `setup`
and `settings` from here. Nothing here is imported by `import costguard` itself.
"""
