"""``python -m bac_ref``: the ``bac-ref`` command line (see :mod:`bac_ref.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
