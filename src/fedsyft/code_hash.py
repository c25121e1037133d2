"""The identity of a training function: the SHA-256 of its source text exactly as PySyft submits it.

Shared by both sides: the data owner's allowlist (:mod:`fedsyft.datasite.approval`)
approves code by this hash, and the researcher (:mod:`fedsyft.sites.syft_site`) calls
the submitted code whose hash it is, never another version under the same name.
"""

from __future__ import annotations

import hashlib
import inspect
from textwrap import dedent

from . import task


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def training_code_sha256(name: str = "local_train") -> str:
    """Hash of ``task.<name>`` exactly as PySyft submits it (``dedent(getsource(f))``)."""
    return source_sha256(dedent(inspect.getsource(task.TRAINING_FUNCTIONS[name])))
