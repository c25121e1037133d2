"""The researcher's algorithms: what to send each site, and how to combine what comes back.

``make_strategy("fedavg" | "fedprox" | "scaffold" | "fedavgm" | "fedadam" | "fedyogi", **options)``
builds one; each option is declared once in :mod:`fedsyft.strategies.options` (name, type,
default per strategy, range, help). Every strategy works with differential privacy: what it
adds on the site (FedProx's proximal term, SCAFFOLD's correction) is data-independent,
and what it does on the researcher's side is post-processing of what the sites released.
"""

from __future__ import annotations

from typing import Any

from .base import FitInstruction, Strategy, display_name
from .fedavg import FedAvg, FedProx
from .options import OPTIONS, STRATEGY, TRAINING, Option, flags, option, options_for, typer_option
from .scaffold import Scaffold
from .server_optimizers import FedAdam, FedAvgM, FedYogi

STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (FedAvg, FedProx, Scaffold, FedAvgM, FedAdam, FedYogi)}


def make_strategy(name: str, **settings: Any) -> Strategy:
    """The strategy ``name`` with the options given (None: the strategy's default), and ``seed``.

    Raises ValueError naming an unknown strategy or an option the strategy does not take
    (given as something other than None), and :class:`~fedsyft.errors.ParameterError`
    naming an option out of its range.
    """
    cls = STRATEGIES.get(str(getattr(name, "value", name)))
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}: choose {', '.join(STRATEGIES)}")
    accepted = {o.name for o in options_for(cls.name, STRATEGY)} | {"seed"}
    extra = {k for k, v in settings.items() if v is not None and k not in accepted}
    if extra:
        raise ValueError(f"strategy {cls.name} does not take {', '.join(sorted(extra))}")
    return cls(**{k: v for k, v in settings.items() if v is not None})


def strategy_label(settings: dict[str, Any] | None) -> str:
    """A run's recorded ``strategy_settings`` as people write the strategy ("FedAdam + EMA 0.95").

    Runs recorded before strategies existed have none: FedAvg.
    """
    settings = settings or {}
    cls = STRATEGIES.get(settings.get("strategy") or "fedavg")
    title = cls.title if cls is not None else str(settings["strategy"])
    return display_name(title, settings.get("ema"))


__all__ = ["FedAdam", "FedAvg", "FedAvgM", "FedProx", "FedYogi", "FitInstruction", "OPTIONS", "Option", "STRATEGIES",
           "STRATEGY", "Scaffold", "Strategy", "TRAINING", "flags", "make_strategy", "option", "options_for",
           "strategy_label", "typer_option"]
