"""``python -m qvd.cli``: the same as the ``qa`` command."""

from qvd.cli.main import main

__all__: list[str] = []

main()
