"""The command line (Typer): `app.py` is the root and maps errors to exit codes; one module per
command group below it. Nothing else in costguard imports this package."""
