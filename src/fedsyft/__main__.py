"""``python -m fedsyft`` is the ``fedsyft`` command."""

from .cli import main

main()
