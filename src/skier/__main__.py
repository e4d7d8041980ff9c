"""``python -m skier`` is the ``skier`` command."""

from skier.cli.main import main

main()
