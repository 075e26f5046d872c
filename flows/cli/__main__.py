"""``python -m flows.cli``: the ``refine`` command, as the local model's child process starts it."""

from flows.cli.app import main

main()
