"""`python -m promptopt` is the `promptopt` command."""

from .cli import main

main()
