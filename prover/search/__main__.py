"""Entry point: ``python -m prover.search`` (also installed as ``prover-search``)."""

import sys

from prover.search.cli import main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    sys.exit(main())
