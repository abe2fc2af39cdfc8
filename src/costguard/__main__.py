"""`python -m costguard` runs the CLI."""

from costguard.cli.app import main

main()
