"""`python -m aevpipe` runs the command-line interface."""

from aevpipe.cli import main

main()
