"""``python -m headstart``: the ``headstart`` command (how torchrun starts the training ranks)."""

from headstart.cli.main import main

main()
