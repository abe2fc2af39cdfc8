"""`python -m costguard` runs the CLI."""

from costguard.cli import main

main()
