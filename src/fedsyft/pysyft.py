"""PySyft, imported once and quietly: for the researcher's sites and the data owner's review alike.

PySyft prints banners and progress bars and adds a root log handler at import; both
sides of fedsyft use these helpers (``--verbose`` shows everything).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import warnings

_syft = None
#: Show PySyft's own messages and logs (``--verbose``); hidden by default.
VERBOSE = False
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_stdout = None


@contextlib.contextmanager
def quiet_stdout():
    """Hide PySyft's print()/display() chatter ("Logged into ...", "SyftSuccess: ...").

    ``contextlib.redirect_stdout`` is not safe when several threads (one per site) use
    it at once: they restore each other's streams and stdout stays swallowed. This
    one swaps ``sys.stdout`` on the first entry and restores it on the last exit.
    """
    global _quiet_depth, _saved_stdout
    if VERBOSE:
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_stdout, sys.stdout = sys.stdout, io.StringIO()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                sys.stdout = _saved_stdout


def import_syft():
    """Import PySyft once, with its progress bars and log noise turned off (5-13 s)."""
    global _syft
    if _syft is None:
        if not VERBOSE:
            os.environ.setdefault("TQDM_DISABLE", "1")
            # PySyft's internal warnings (e.g. its protocol-hash check, which fires now and then
            # when two sites log in at once) mean nothing to a user; --verbose shows them.
            warnings.filterwarnings("ignore", module="syft")
        import syft  # prints nothing itself; may run in a background thread
        if not VERBOSE:  # PySyft adds a root stderr handler at import; keep only errors
            logging.getLogger().setLevel(logging.ERROR)
            for name in ("syft", "urllib3"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        _syft = syft
    return _syft
