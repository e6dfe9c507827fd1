"""`python -m configctl` runs the command-line interface."""

from configctl.cli.main import main

main()
