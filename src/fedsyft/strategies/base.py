"""What a strategy is: which sites to ask this round and with what, and how to combine their answers.

The shape of Flower's ``Strategy`` (``configure_fit`` / ``aggregate_fit``), kept small: the
federation loop asks the strategy for one :class:`FitInstruction` per site it wants to hear
from, calls those sites, and hands the answers back. Every algorithm lives here, so the loop
knows none. :class:`Strategy` is abstract; :class:`~fedsyft.strategies.FedAvg` is the plain
concrete one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..aggregate import Params
from ..sites.base import SiteResult
from .options import STRATEGY, count_or_fraction, options_for, resolve, sites_per_round

__all__ = ["FitInstruction", "Strategy", "count_or_fraction", "display_name", "zeros_like_model"]


def display_name(title: str, ema: float | None) -> str:
    """A strategy's title with its averaging, as consoles and reports show it: "FedAdam + EMA 0.95"."""
    return title + (f" + EMA {ema:g}" if ema else "")


def zeros_like_model(params: Params | None, config: Mapping[str, Any] | None = None) -> Params:
    """Zero parameters shaped like ``params``; with none yet, like the model ``config`` trains.

    The shape comes from the config's public schema keys (``n_classes``, ``scale``), else
    MNIST's: 10 classes x 784 pixels.
    """
    if params is not None:
        return {k: np.zeros_like(np.asarray(v, np.float32)) for k, v in params.items()}
    config = config or {}
    k = int(config.get("n_classes", 10))
    d = len(config["scale"]["low"]) if "scale" in config else 784
    return {"coef": np.zeros((k, d), np.float32), "intercept": np.zeros(k, np.float32)}


@dataclass(frozen=True)
class FitInstruction:
    """What one site receives this round: the parameters to start from and its training config."""

    params: Params | None
    config: dict[str, Any]


class Strategy(ABC):
    """The base of every strategy: client sampling, the moving average, state and description.

    A strategy says how to combine the sites' answers (:meth:`aggregate_fit`, abstract) and
    may adjust what each site receives (:meth:`site_config`). Its options are declared in
    :mod:`fedsyft.strategies.options`; None means the strategy's default there.

    Parameters
    ----------
    clients_per_round : sites asked each round: a count (1, 2, ...), or a fraction below 1
        of the sites (at least one: ``max(1, floor(fraction * sites))``, as Flower's
        ``fraction_fit``); None: all. Chosen uniformly without replacement, seeded by
        ``seed`` and the round number, so a resumed run samples as an uninterrupted one would.
    seed : seeds the sampling.
    weighted : average weighted by ``n_train`` (FedAvg) or a plain mean.
    ema : with a decay in (0, 1), the run's model is an exponential moving average of
        the aggregates (Polyak averaging): ``model = ema * model + (1 - ema) * aggregate``,
        starting from the first aggregate. The sites still train from the latest
        aggregate; the average is what is evaluated, saved and returned. It smooths
        the round-to-round swings of sampled, non-IID rounds, and as post-processing
        it costs no privacy. 0: the model is the aggregate.

    ``weighted`` and ``ema`` left None take the strategy's defaults, which for some
    strategies depend on whether ``clients_per_round`` is given (see the options).
    """

    name: ClassVar[str]   # as it is chosen: make_strategy("fedavg")
    title: ClassVar[str]  # as people write it: "FedAvg"

    def __init__(self, *, clients_per_round: int | float | None = None, seed: int = 0, weighted: bool | None = None,
                 ema: float | None = None):
        self.clients_per_round = count_or_fraction(clients_per_round)
        self.seed = seed
        self.weighted = self._option("weighted", weighted)
        self.ema = self._option("ema", ema)
        self._average: Params | None = None
        self._averaged_round = 0

    def _option(self, name: str, value: Any) -> Any:
        """Option ``name`` as given, checked, or this strategy's default (for a run that samples sites or not)."""
        return resolve(name, value, self.name, sampled=self.clients_per_round is not None)

    # -- the two hooks the federation loop calls --

    def configure_fit(self, round_no: int, params: Params | None, sites: Sequence[str],
                      config: dict[str, Any]) -> dict[str, FitInstruction]:
        """One instruction per site to call this round (in ``sites`` order)."""
        return {name: FitInstruction(params, self.site_config(name, config)) for name in self.sample(round_no, sites)}

    @abstractmethod
    def aggregate_fit(self, round_no: int, params: Params | None, results: Mapping[str, SiteResult]) -> Params:
        """The new global parameters from the sites that answered (in call order), given the current ``params``."""

    def round_model(self, round_no: int, params: Params) -> Params:
        """The model round ``round_no`` yields from its aggregate ``params``: evaluated, saved, returned.

        The aggregate itself, or with ``ema`` the moving average, updated once per round:
        asking again for the same round returns the same average.
        """
        if not self.ema:
            return params
        if round_no > self._averaged_round:
            new = {k: np.asarray(v, np.float64) for k, v in params.items()}
            old = self._average
            self._average = new if old is None else {k: self.ema * old[k] + (1 - self.ema) * new[k] for k in new}
            self._averaged_round = round_no
        return {k: v.astype(np.float32) for k, v in self._average.items()}

    # -- pieces subclasses adjust --

    def site_config(self, site: str, config: dict[str, Any]) -> dict[str, Any]:
        """The training config a site receives (a copy of the run's, plus the strategy's keys)."""
        return dict(config)

    def sample(self, round_no: int, sites: Sequence[str]) -> list[str]:
        """The sites asked in ``round_no``: all, or ``clients_per_round`` of them at random."""
        k = sites_per_round(self.clients_per_round, len(sites))
        if k >= len(sites):
            return list(sites)
        rng = np.random.default_rng([self.seed, round_no])
        chosen = np.sort(rng.choice(len(sites), size=k, replace=False))
        return [sites[i] for i in chosen]

    # -- state: what a checkpoint keeps so a resumed run continues exactly --

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state as a nested dict of arrays: here the moving average, if any.

        ``{"ema": {"coef": ..., "intercept": ..., "round": n}}``; subclasses add their own
        top-level keys. Empty for a strategy that keeps nothing between rounds. The run
        directory flattens it into the checkpoint (:func:`fedsyft.run_dir.flatten_state`).
        """
        if self._average is None:
            return {}
        return {"ema": {**self._average, "round": np.asarray(self._averaged_round)}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (subclasses restore their own keys)."""
        average = {k: np.asarray(v, np.float64) for k, v in (state.get("ema") or {}).items()}
        self._averaged_round = int(average.pop("round", 0))
        self._average = average or None

    # -- for people --

    @property
    def label(self) -> str:
        """The strategy as people write it, for consoles and reports: "FedAdam + EMA 0.95"."""
        return display_name(self.title, self.ema)

    def describe(self) -> dict[str, Any]:
        """The strategy's name and the options it takes as in effect, for the run's recorded config.

        ``ema`` is left out when off, as in runs recorded before it existed.
        """
        settings = {o.name: getattr(self, o.name) for o in options_for(self.name, STRATEGY)}
        if not settings.get("ema"):
            settings.pop("ema", None)
        return {"strategy": self.name, **settings}
