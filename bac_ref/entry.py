"""One-line errors for the ``python -m bac_ref.<module>`` scripts (train, release, skipgram,
embeddings), as the ``bac-ref`` command line gives them: a missing or unreadable file, a
bad model file or bad input is one line on stderr and exit status 2, not a traceback
(set BAC_REF_DEBUG=1 for the traceback).  A low module: it imports nothing from bac_ref at
import time."""
from __future__ import annotations

import os
import sys
import traceback

__all__ = ["run", "require_file", "require_folder"]

DEBUG_ENV = "BAC_REF_DEBUG"


def require_file(path, what: str) -> None:
    """FileNotFoundError naming ``what`` and the path, before any work is done."""
    if not os.path.isfile(path):
        raise FileNotFoundError(2, f"{what} not found (pass its path; see README, "
                                   f"'Data sets')", os.fspath(path))


def require_folder(path, what: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(2, f"{what} folder not found (pass its path; see README, "
                                   f"'Data sets')", os.fspath(path))


def run(main, prog: str, argv=None) -> int:
    """``main(argv)`` with expected errors turned into ``PROG: error: MESSAGE`` (exit 2)."""
    from .errors import BitstreamError, ModelFileError
    try:
        code = main(argv)
        return 0 if code is None else int(code)
    except KeyboardInterrupt:
        print(f"{prog}: error: interrupted", file=sys.stderr, flush=True)
        return 130
    except (OSError, ValueError, ModelFileError, BitstreamError) as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.strerror:
            text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
        else:
            text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {text}", file=sys.stderr, flush=True)
        return 2
