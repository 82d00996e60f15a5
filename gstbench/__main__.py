"""Allows `python -m gstbench`, the same as the `gstbench` console script."""

from gstbench.cli import main

main()
