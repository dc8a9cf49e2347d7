"""`python -m touchpoint` is the `touchpoint` command."""

from touchpoint.cli.main import main

main()
