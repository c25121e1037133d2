"""The library's error for a bad argument, naming its parameters so that each surface can spell them its own way.

A message marks each parameter name with :func:`param`; ``str(error)`` shows the Python
names (``min_size``), and the command line renders the same error with its flags
(``--min-size``) through :meth:`ParameterError.render`, with no pattern matching on text.
"""

from __future__ import annotations

_OPEN, _CLOSE = "\x02", "\x03"  # marks around a parameter's name inside a message


def param(name: str) -> str:
    """A parameter's name, marked for :meth:`ParameterError.render`."""
    return f"{_OPEN}{name}{_CLOSE}"


class ParameterError(ValueError):
    """A bad argument; ``parameters`` are the names its message marks with :func:`param`."""

    def __init__(self, message: str):
        self.message = message
        self.parameters = tuple(part.split(_CLOSE, 1)[0] for part in message.split(_OPEN)[1:])
        super().__init__(self.render({}))

    def render(self, spelling: dict[str, str]) -> str:
        """The message with each marked parameter spelled as ``spelling`` says (unlisted: its own name)."""
        text = self.message
        for name in self.parameters:
            text = text.replace(param(name), spelling.get(name, name))
        return text
