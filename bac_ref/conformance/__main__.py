"""``python -m bac_ref.conformance``: the conformance runner (see :mod:`.runner`)."""
import sys

from .runner import main

sys.exit(main())
