"""``python -m qvd`` is the ``qvd`` command."""

from qvd.node.cli import main

main()
