"""The partition options, each declared once: name, type, default, range, help and the partitions that take it.

Everything else derives from :data:`OPTIONS`: :func:`fedsyft.partition.make_partition`'s
accepted keywords, their defaults and checks (and the keyword defaults of the partition
functions themselves); the command line's options (``fedsyft launch``, ``fedsyft simulate``:
flag, default, help, range, via :func:`typer_option`), the ``partition_settings`` a run
records (:func:`settings`; ``--resume`` reads them back) and the flag a library error's
parameter is spelled with (:func:`flags`).

Imports neither numpy nor typer, so the command line can read it cheaply.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError, param

#: The partitions, by the name each is chosen with (:func:`fedsyft.partition.make_partition`).
PARTITIONS = ("iid", "dirichlet", "shards", "pathological", "powerlaw")


def whole(name: str, value: Any, low: int | None = 1, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, or a ParameterError naming ``name``.

    A bool (an int to Python, never a count to a person) and a float (even 2.0) are refused.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ParameterError(f"{param(name)} must be an integer, got {value!r}") from None
    if low is not None and number < low:
        raise ParameterError(f"{param(name)} must be at least {low}, got {number}")
    if high is not None and number > high:
        raise ParameterError(f"{param(name)} must be at most {high}, got {number}")
    return number


@dataclass(frozen=True)
class Option:
    """One setting of the partitions.

    Parameters
    ----------
    name : the parameter's name: the partition function's keyword, a ``make_partition`` keyword,
        a key of a run's ``partition_settings``.
    type : ``int`` or ``float``.
    default : the value when none is given (None: worked out from the data, as the partition's
        docstring says). For a ``required`` option, the command line's default only.
    help : one line for a person; :meth:`help_text` puts the partitions in front.
    partitions : the partitions that take the option.
    low, high : the allowed range, both ends included unless ``low_open`` (None: unbounded).
    required : the library has no default and asks for the value (``make_partition`` says which
        partition needs it); the command line offers ``default``.
    command_line : offered by ``fedsyft launch`` and ``simulate`` and recorded in a run's
        ``partition_settings``; False: a library keyword only.
    command_line_high : an upper bound the command line adds to ``high`` (the library checks the
        value against the labels it is given instead).
    """

    name: str
    type: type
    default: Any
    help: str
    partitions: tuple[str, ...]
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    required: bool = False
    command_line: bool = True
    command_line_high: float | None = None

    def applies_to(self, partition: str) -> bool:
        return partition in self.partitions

    def validate(self, value: Any) -> Any:
        """``value`` as the option's type and in its range, or a ParameterError naming the option.

        None passes for an option whose default is None (the partition works the value out).
        """
        if value is None and self.default is None:
            return None
        if self.type is int:
            return whole(self.name, value, self.low, self.high)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{param(self.name)} must be a number, got {value!r}") from None
        below = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        above = self.high is not None and number > self.high
        if not math.isfinite(number) or below or above:
            raise ParameterError(f"{param(self.name)} must be {self.range_text()}, got {value}")
        return number

    def range_text(self) -> str:
        """The allowed range in words: "positive", "non-negative", "at least 1", "at least 1 and at most 10"."""
        low = None if self.low is None else (
            ("positive" if self.low_open else "non-negative") if self.low == 0
            else f"above {self.low:g}" if self.low_open else f"at least {self.low:g}")
        high = None if self.high is None else f"at most {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "finite"

    def help_text(self) -> str:
        """The help line as a command line shows it: "dirichlet: concentration (small = skewed)."."""
        return f"{', '.join(self.partitions)}: {self.help}."

    @property
    def flag(self) -> str:
        """The command-line flag, ``--min-size``."""
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("alpha", float, 0.5, "concentration (small = skewed)", ("dirichlet",), low=0, low_open=True,
           required=True),
    Option("min_size", int, 10, "the fewest rows a site may get (draws are repeated until every site has them)",
           ("dirichlet",), low=1),
    Option("shards_per_client", int, 2, "shards dealt to each site", ("shards",), low=1),
    Option("shard_size", int, None, "rows per shard (default: rows / (sites x shards per site))", ("shards",),
           low=1),
    # At most the classes in the labels, which the partitions check; the command line's 10 are MNIST's digits.
    Option("classes_per_client", int, 2, "classes each site holds", ("pathological", "powerlaw"), low=1,
           command_line_high=10),
    Option("sigma", float, 2.0, "lognormal shape of the devices' shares (0: even)", ("powerlaw",), low=0,
           command_line=False),
    Option("min_per_class", int, None, "seed rows per (device, class) (default: FedProx's 5, lowered for many "
           "devices)", ("powerlaw",), low=1, command_line=False),
)

_BY_NAME = {o.name: o for o in OPTIONS}


def option(name: str) -> Option:
    """The declaration of ``name`` (KeyError naming the known options otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no partition option {name!r}: the options are {', '.join(_BY_NAME)}") from None


def options_for(partition: str) -> tuple[Option, ...]:
    """The options ``partition`` takes, in declaration order."""
    return tuple(o for o in OPTIONS if o.applies_to(partition))


def default(name: str) -> Any:
    """The library's default of option ``name`` (a required option has none: KeyError)."""
    o = option(name)
    if o.required:
        raise KeyError(f"partition option {name!r} has no default: it is required")
    return o.default


def settings(partition: str, values: dict[str, Any]) -> dict[str, Any]:
    """The command-line options ``partition`` takes, from ``values`` (by name), in declaration order.

    What ``fedsyft launch`` and ``simulate`` pass to ``make_partition`` and a run records as
    ``partition_settings``.
    """
    return {o.name: values[o.name] for o in options_for(partition) if o.command_line}


def typer_option(name: str, *, rich_help_panel: str | None = "Partition"):
    """A ``typer.Option`` for option ``name``: flag, default, help and range. Imports typer only when called."""
    import click
    import typer

    o = option(name)
    if not o.command_line:
        raise KeyError(f"partition option {name!r} is not a command-line option")
    high = min((h for h in (o.high, o.command_line_high) if h is not None), default=None)
    extra: dict[str, Any] = {}
    if o.low is not None or high is not None:
        extra["click_type"] = (click.IntRange(min=o.low, max=high) if o.type is int
                               else click.FloatRange(min=o.low, max=high, min_open=o.low_open))
    return typer.Option(o.default, o.flag, help=o.help_text(), rich_help_panel=rich_help_panel, **extra)


def flags() -> dict[str, str]:
    """Each command-line option's flag by parameter name, for :meth:`fedsyft.errors.ParameterError.render`."""
    return {o.name: o.flag for o in OPTIONS if o.command_line}
