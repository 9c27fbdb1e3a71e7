"""`python -m promptopt` is the `promptopt` command."""

from .launcher import main

main()
