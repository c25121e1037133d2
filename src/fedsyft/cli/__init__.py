"""The ``fedsyft`` command: a thin layer over the library (see :mod:`fedsyft.cli.app`)."""

from .app import app, main

__all__ = ["app", "main"]
