"""``python -m losskit``: the same as the ``losskit`` command."""

from losskit.cli import main

main()
