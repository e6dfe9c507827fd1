"""`python -m configctl` runs the command-line interface."""

from configctl.cli.app import main

main()
