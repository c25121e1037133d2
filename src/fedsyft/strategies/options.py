"""Every strategy option, declared once: its name, type, default (per strategy where it differs), range and help.

The strategies' constructors validate with these declarations, :class:`~fedsyft.experiment.RunConfig`
takes its strategy fields from them, the recorded settings follow them, and a command line
builds its options from them (:func:`typer_option`). A library error names the parameter
(``server_lr must be positive``), marked so that a surface can spell it as its flag
(:class:`fedsyft.errors.ParameterError`).

Defaults that depend on the strategy were tuned on the benchmarks' label-skewed MNIST
federation, Dirichlet α = 0.1 over 10 sites, 20 rounds, all sites every round
(``benchmarks/run_benchmarks.py``, heterogeneity): each strategy's defaults reach within a
point of its best tuned setting there. FedAvg's ``local_iters`` depends on how many sites
train a round (:class:`PerRound`): the original project's 25 L-BFGS iterations with up to 3
(0.926 after 5 rounds on two IID sites, as ``fedsyft demo`` shows), 5 with more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Optional

from ..errors import ParameterError, param

#: The strategies, by the name each is chosen with (the classes register under these names).
BUILT_IN = ("fedavg", "fedprox", "scaffold", "fedavgm", "fedadam", "fedyogi")
OTHERS = "*"  # in a per-strategy default: the default of any other strategy (a subclass of your own)
SERVER_STEP = ("scaffold", "fedavgm", "fedadam", "fedyogi")  # those with a server step size
ADAPTIVE = ("fedadam", "fedyogi")

STRATEGY = "strategy"  # an option the strategy's constructor takes
TRAINING = "training"  # a setting of the sites' training whose default the strategy chooses (RunConfig's)


def count_or_fraction(value: int | float | None) -> int | float | None:
    """``clients_per_round`` checked: None, a whole count of at least 1 (as an int), or a fraction in (0, 1).

    Raises ParameterError for anything else (0, negatives, 2.5, NaN).
    """
    if value is None:
        return None
    value = float(value)
    if 0 < value < 1:
        return value
    if value >= 1 and value.is_integer():
        return int(value)
    raise ParameterError(f"{param('clients_per_round')} must be a count of sites (1, 2, ...) or a fraction "
                         f"between 0 and 1, got {value:g}")


def sites_per_round(clients_per_round: int | float | None, sites: int) -> int:
    """How many of ``sites`` a round calls: all (``clients_per_round`` None), the count (at most all), or the
    fraction's share, at least one, rounded down (Flower's ``fraction_fit``; the small epsilon keeps 0.29 × 100
    from flooring to 28)."""
    k = count_or_fraction(clients_per_round)
    if isinstance(k, float):
        k = max(1, math.floor(k * sites + 1e-9))
    return sites if k is None else min(k, sites)


@dataclass(frozen=True)
class Sampled:
    """A default that depends on whether the run samples its sites: ``clients_per_round`` given, or not.

    Public, as the researcher sets it: with a few sites a round the aggregates swing with
    the draw, and smoothing (``ema``) and a plain mean (not ``weighted`` by very unequal
    ``n_train``) help. A ``clients_per_round`` as large as the federation counts as sampling too.
    """

    every_round: Any  # when every site is called every round (no clients_per_round)
    sampled: Any      # when clients_per_round is given

    def __str__(self) -> str:
        return f"{_shown(self.sampled)} with clients_per_round, else {_shown(self.every_round)}"


@dataclass(frozen=True)
class PerRound:
    """A default that depends on how many sites train a round: all of them, or ``clients_per_round`` of them.

    Public, as the researcher connects to the sites and chooses the sampling. With a few sites
    a round (the original project's two), each site's fit is a large part of the federation and
    long local fits converge fast; with more, each is a piece that drifts towards its own labels
    when the sites' data differ, and shorter fits do better. The count is known once the run
    knows its sites (:attr:`fedsyft.experiment.RunConfig.site_count`); before, ``few`` applies.
    """

    up_to: int  # the most sites a round that still take ``few``
    few: Any    # with at most ``up_to`` sites a round (or the count not known yet)
    more: Any   # with more

    def __str__(self) -> str:
        return (f"{_shown(self.few)} with up to {self.up_to} sites a round (all, or clients_per_round), "
                f"else {_shown(self.more)}")


@dataclass(frozen=True)
class Option:
    """One setting of the strategies.

    Parameters
    ----------
    name : the parameter's name: the strategy constructor's keyword, RunConfig's field.
    type : ``float``, ``int`` or ``bool``: what a command line parses.
    default : the value when none is given: one for every strategy that takes the option, or a
        mapping from strategy name to its own (with :data:`OTHERS` for strategies not named);
        a default may be :class:`Sampled`: one value for runs that sample sites, one for others;
        or :class:`PerRound`: one value up to a number of sites a round, one above (only where
        that number is known: :meth:`RunConfig.setting <fedsyft.experiment.RunConfig.setting>`).
    help : one line for a person; the defaults are added by :meth:`help_text`.
    low, high : the allowed range (None: unbounded on that side; finite values only).
    low_open, high_open : whether ``low`` / ``high`` themselves are excluded.
    strategies : the strategies that take the option; None: every strategy, your own included.
    kind : :data:`STRATEGY` (a keyword of the strategy's constructor) or :data:`TRAINING` (a
        setting of the sites' training, ``local_iters``, whose default the strategy chooses).
    check : a validator used instead of the range (it returns the value, converted, or raises).
    """

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    strategies: tuple[str, ...] | None = None
    kind: str = STRATEGY
    check: Callable[[Any], Any] | None = None

    def applies_to(self, strategy: str) -> bool:
        return self.strategies is None or strategy in self.strategies

    def default_for(self, strategy: str, sampled: bool = False, per_round: int | None = None) -> Any:
        """The default of ``strategy`` in a run that samples its sites or not, with ``per_round`` sites training a
        round (None: not known yet). KeyError for a strategy that does not take the option."""
        if not self.applies_to(strategy):
            raise KeyError(f"strategy {strategy} does not take {self.name}")
        default = self.default
        if isinstance(default, Mapping):
            default = default[strategy] if strategy in default else default[OTHERS]
        if isinstance(default, Sampled):
            default = default.sampled if sampled else default.every_round
        if isinstance(default, PerRound):
            default = default.few if per_round is None or per_round <= default.up_to else default.more
        return default

    def resolve(self, value: Any, strategy: str, sampled: bool = False, per_round: int | None = None) -> Any:
        """``value`` checked and converted, or the default of ``strategy`` (sampling its sites or not, ``per_round``
        sites a round) when None."""
        return self.validate(self.default_for(strategy, sampled, per_round) if value is None else value)

    def validate(self, value: Any) -> Any:
        """``value`` as the option's type, or a ParameterError naming the option and its range."""
        if self.check is not None:
            return self.check(value)
        if self.type is bool:
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise ParameterError(f"{param(self.name)} must be true or false, got {value!r}")
            return bool(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{param(self.name)} must be a number, got {value!r}") from None
        below = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        above = self.high is not None and (number >= self.high if self.high_open else number > self.high)
        if not math.isfinite(number) or below or above:
            raise ParameterError(f"{param(self.name)} must be {self.range_text()}, got {value!r}")
        if self.type is int:
            if not number.is_integer():
                raise ParameterError(f"{param(self.name)} must be a whole number, got {value!r}")
            return int(number)
        return float(number)

    def range_text(self) -> str:
        """The allowed range in words: "positive", "between 0 and 1000", "at least 0 and below 1"."""
        low = None if self.low is None else ("positive" if self.low == 0 and self.low_open
                                             else f"above {self.low:g}" if self.low_open else f"at least {self.low:g}")
        high = None if self.high is None else (f"below {self.high:g}" if self.high_open else f"at most {self.high:g}")
        if low and high:
            if not (self.low_open or self.high_open):
                return f"between {self.low:g} and {self.high:g}"
            return f"{low} and {high}"
        return low or high or "finite"

    def help_text(self) -> str:
        """The help line with the defaults, as a command line shows it."""
        return f"{self.help} (default: {self.default_text()})."

    def default_text(self) -> str:
        """The defaults in words: "0.01", or per strategy, "fedavg, fedprox: 25; scaffold: 3; fedavgm, ...: 2"."""
        if not isinstance(self.default, Mapping):
            return _shown(self.default)
        by_value: dict[str, list[str]] = {}
        for strategy in self.strategies or BUILT_IN:
            default = self.default.get(strategy, self.default.get(OTHERS))
            by_value.setdefault(_shown(default), []).append(strategy)
        return "; ".join(f"{', '.join(names)}: {value}" for value, names in by_value.items())

    @property
    def flag(self) -> str:
        """The conventional command-line flag, ``--server-lr`` (a bool's pair: ``--weighted/--unweighted``)."""
        return "--" + self.name.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, (Sampled, PerRound)):
        return str(value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, "g") if isinstance(value, float) else str(value)


OPTIONS: tuple[Option, ...] = (
    # -- every strategy -----------------------------------------------------------------------------------------------
    Option("clients_per_round", float, None,
           "Sites called each round: a count (10), or a fraction below 1 of the sites (0.01: 1 %, at least one), "
           "sampled uniformly with the run's seed; none: all", check=count_or_fraction),
    # With clients_per_round (a few sites a round), every strategy but plain FedAvg (the reference, and a
    # strategy of your own) smooths its model and takes a plain mean. Tuned on the benchmarks' two sampled
    # settings, 10 sites a round: McMahan's pathological 100 x 2 shards and FedProx's 1,000 power-law devices,
    # 100 rounds. There, ema 0.95 with a plain mean: FedAdam 0.9094 and 0.9033 (without: 0.7779, 0.7331),
    # FedYogi 0.9099 and 0.9036 (0.7819, 0.7553), FedAvgM 0.9052 and 0.8967 (0.8485, 0.3739), FedProx 0.8889
    # and 0.8824 (0.8512, 0.8163), SCAFFOLD (ema only) 0.9086 and 0.8958 (0.9112, 0.8756).
    Option("weighted", bool, {
        "fedavg": True, OTHERS: True,
        "scaffold": True,  # its step is the paper's plain mean of the sites' changes either way
        **dict.fromkeys(("fedprox", "fedavgm", "fedadam", "fedyogi"), Sampled(every_round=True, sampled=False)),
    }, "Average the sites' answers weighted by their n_train (FedAvg), or take a plain mean"),
    Option("ema", float, {
        "fedavg": 0.0, OTHERS: 0.0,
        **dict.fromkeys(("fedprox", "scaffold", "fedavgm", "fedadam", "fedyogi"), Sampled(every_round=0.0, sampled=0.95)),
    }, "Report the exponential moving average of the global models with this decay, e.g. 0.95 (Polyak averaging; "
       "the sites still train from the latest model); 0: off", low=0, high=1, high_open=True),
    # -- one strategy's or a family's ---------------------------------------------------------------------------------
    Option("mu", float, 0.01, "FedProx: weight of the proximal term mu/2 |w - w_global|^2", low=0, high=1000,
           strategies=("fedprox",)),
    Option("server_lr", float, {
        # Tuned on Dirichlet α = 0.1 × 10 sites × 20 rounds, with each strategy's local_iters below.
        "scaffold": 0.3,   # was 1.0 (the paper's): 0.7987, oscillating; 0.2: 0.8927, 0.3: 0.8952, 0.5: 0.8892
        "fedavgm": 1.0,    # with server_momentum 0.9: 0.9093
        "fedadam": 0.03,   # was 0.01: 0.8851; 0.03: 0.9104
        "fedyogi": 0.03,   # was 0.01; 0.03: 0.9095
    }, "Server step size", low=0, low_open=True, strategies=SERVER_STEP),
    Option("server_momentum", float, 0.9, "FedAvgM: server momentum", low=0, high=1, high_open=True,
           strategies=("fedavgm",)),
    Option("beta1", float, 0.9, "FedAdam/FedYogi: first-moment decay", low=0, high=1, high_open=True,
           strategies=ADAPTIVE),
    Option("beta2", float, 0.99, "FedAdam/FedYogi: second-moment decay", low=0, high=1, high_open=True,
           strategies=ADAPTIVE),
    Option("tau", float, 1e-3, "FedAdam/FedYogi: adaptivity (the smallest step's denominator)", low=0,
           low_open=True, strategies=ADAPTIVE),
    # -- the sites' training, with a default per strategy --------------------------------------------------------------
    Option("local_iters", int, {
        # FedAvg keeps the original project's 25 with up to 3 sites a round: `fedsyft demo` and two IID sites'
        # 0.926 after 5 rounds rest on it. With more, each site's long fit drifts to its own labels: on
        # Dirichlet α = 0.1 × 10 sites × 20 rounds, 25 reaches 0.8073; 2: 0.8746, 4: 0.8824, 5: 0.8876,
        # 6: 0.8884, 7: 0.8838. 5 also lifts the sampled settings, 10 sites a round (McMahan's pathological
        # split 0.7689 -> 0.8438, FedProx's power-law devices 0.7466 -> 0.7844), and costs sites with alike
        # data a little (100 IID sites, 20 rounds: 0.9230 -> 0.9200; 10,000, 10 a round, 5 rounds: 0.6798 -> 0.6407).
        "fedavg": PerRound(up_to=3, few=25, more=5),
        "fedprox": 25,     # its proximal term holds long local fits near the global model: 0.8999 (5: 0.8870)
        # With a server step or control variates, short local fits do better on skewed sites. Tuned on
        # Dirichlet α = 0.1 × 10 sites × 20 rounds; there, with 25: SCAFFOLD 0.5325, FedAvgM 0.806,
        # FedAdam 0.7307, FedYogi 0.7221.
        "scaffold": 3,     # with server_lr 0.3: 0.8952 (2: 0.8782, 4: 0.8934; 1 at server_lr 1: 0.8775)
        "fedavgm": 2,      # 0.9093
        "fedadam": 2,      # with server_lr 0.03: 0.9104 (1: 0.9047, 3: 0.9100)
        "fedyogi": 2,      # with server_lr 0.03: 0.9095
        OTHERS: 25,
    }, "L-BFGS iterations per site per round (non-private training); on a feature map's centred features the "
       "default is at most the map's cap (scatter: 8, fedsyft.features.FeatureMap.max_default_local_iters)",
       low=1, high=1000, kind=TRAINING),
)

_BY_NAME = {o.name: o for o in OPTIONS}


def option(name: str) -> Option:
    """The declaration of ``name`` (KeyError naming the known options otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no strategy option {name!r}: the options are {', '.join(_BY_NAME)}") from None


def options_for(strategy: str, kind: str | None = None) -> tuple[Option, ...]:
    """The options ``strategy`` takes (of one ``kind``, or all), in declaration order."""
    return tuple(o for o in OPTIONS if o.applies_to(strategy) and (kind is None or o.kind == kind))


def resolve(name: str, value: Any, strategy: str, sampled: bool = False) -> Any:
    """Option ``name`` for ``strategy``: ``value`` checked, or the strategy's default (sampling or not) when None."""
    return option(name).resolve(value, strategy, sampled)


#: One field per option, each None by default ("the strategy's default"), keyword-only:
#: the strategy settings of :class:`~fedsyft.experiment.RunConfig`, which derives from it.
StrategySettings = make_dataclass(
    "StrategySettings",
    [(o.name, Optional[o.type], field(default=None, metadata={"option": o})) for o in OPTIONS],
    kw_only=True,
    namespace={"__doc__": "The strategy options of a run, one field per :data:`OPTIONS` entry (None: the "
                          "strategy's default).", "__module__": __name__},
)


def typer_option(name: str, *, rich_help_panel: str | None = "Strategy"):
    """A ``typer.Option`` for option ``name``: flag, help with the defaults, and its range.

    Its default is None (the strategy's default applies), so a command passes what it gets
    straight to :class:`~fedsyft.experiment.RunConfig`. A bool option is a flag pair
    (``--weighted/--unweighted``). Imports typer only when called.
    """
    import click
    import typer

    o = option(name)
    decl = f"{o.flag}/--un{o.flag[2:]}" if o.type is bool else o.flag
    extra: dict[str, Any] = {}
    if o.check is None and o.type is not bool and (o.low is not None or o.high is not None):
        kind = click.IntRange if o.type is int else click.FloatRange
        extra["click_type"] = kind(min=o.low, max=o.high, **({"min_open": o.low_open, "max_open": o.high_open}
                                                             if o.type is float else {}))
    return typer.Option(None, decl, help=o.help_text(), show_default=False, rich_help_panel=rich_help_panel, **extra)


def flags() -> dict[str, str]:
    """Each option's flag by parameter name, for :meth:`fedsyft.errors.ParameterError.render`."""
    return {o.name: o.flag for o in OPTIONS}
