"""QVD in Python: a Linux VDI platform compatible with QVD clients.

One sub-package per component (see DESIGN.md §6): ``config`` and ``db`` at the bottom,
daemons and tools above them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
