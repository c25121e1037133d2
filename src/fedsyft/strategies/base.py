"""What a strategy is: which sites to ask this round and with what, and how to combine their answers.

The shape of Flower's ``Strategy`` (``configure_fit`` / ``aggregate_fit``), kept small: the
federation loop asks the strategy for one :class:`FitInstruction` per site it wants to hear
from, calls those sites, and hands the answers back. Every algorithm lives here, so the loop
knows none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..aggregate import Params, fedavg
from ..sites.base import SiteResult

EMA_PREFIX = "ema|"


def display_name(title: str, ema: float | None) -> str:
    """A strategy's title with its averaging, as consoles and reports show it: "FedAdam + EMA 0.95"."""
    return title + (f" + EMA {ema:g}" if ema else "")


def count_or_fraction(value: int | float | None) -> int | float | None:
    """``clients_per_round`` checked: None, a whole count of at least 1 (as an int), or a fraction in (0, 1).

    Raises ValueError for anything else (0, negatives, 2.5, NaN).
    """
    if value is None:
        return None
    value = float(value)
    if 0 < value < 1:
        return value
    if value >= 1 and value.is_integer():
        return int(value)
    raise ValueError(f"clients_per_round must be a count of sites (1, 2, ...) or a fraction between 0 and 1, "
                     f"got {value:g}")


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


class Strategy:
    """FedAvg (McMahan et al. 2017), with optional client sampling; the base of every strategy.

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
        it costs no privacy. 0 (the default): the model is the aggregate.
    """

    name = "fedavg"
    title = "FedAvg"  # as people write it

    def __init__(self, *, clients_per_round: int | float | None = None, seed: int = 0, weighted: bool = True,
                 ema: float = 0.0):
        clients_per_round = count_or_fraction(clients_per_round)
        if not 0 <= ema < 1:
            raise ValueError(f"ema must be at least 0 and below 1, got {ema}")
        self.clients_per_round, self.seed, self.weighted, self.ema = clients_per_round, seed, weighted, float(ema)
        self._average: Params | None = None
        self._averaged_round = 0

    # -- the two hooks the federation loop calls --

    def configure_fit(self, round_no: int, params: Params | None, sites: Sequence[str],
                      config: dict[str, Any]) -> dict[str, FitInstruction]:
        """One instruction per site to call this round (in ``sites`` order)."""
        return {name: FitInstruction(params, self.site_config(name, config)) for name in self.sample(round_no, sites)}

    def aggregate_fit(self, round_no: int, params: Params | None, results: Mapping[str, SiteResult]) -> Params:
        """The new global parameters from the sites that answered (in call order)."""
        return fedavg([(r.params, r.n_train) for r in results.values()], weighted=self.weighted)

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
        k = self.clients_per_round
        if isinstance(k, float):  # a fraction; the small epsilon keeps 0.29 * 100 from flooring to 28
            k = max(1, math.floor(k * len(sites) + 1e-9))
        if k is None or k >= len(sites):
            return list(sites)
        rng = np.random.default_rng([self.seed, round_no])
        chosen = np.sort(rng.choice(len(sites), size=k, replace=False))
        return [sites[i] for i in chosen]

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint so a resumed run continues exactly (the moving average, if any).

        Subclasses add their own under keys without the ``ema|`` prefix.
        """
        if self._average is None:
            return {}
        return {**{EMA_PREFIX + k: v for k, v in self._average.items()},
                EMA_PREFIX + "round": np.asarray(self._averaged_round)}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (subclasses restore the keys without the ``ema|`` prefix)."""
        average = {k[len(EMA_PREFIX):]: np.asarray(v, np.float64) for k, v in state.items() if k.startswith(EMA_PREFIX)}
        self._averaged_round = int(average.pop("round", 0))
        self._average = average or None

    @property
    def label(self) -> str:
        """The strategy as people write it, for consoles and reports: "FedAdam + EMA 0.95"."""
        return display_name(self.title, self.ema)

    def describe(self) -> dict[str, Any]:
        """The strategy's name and settings, for the run's recorded config."""
        return {"strategy": self.name, "clients_per_round": self.clients_per_round, "weighted": self.weighted,
                **({"ema": self.ema} if self.ema else {})}  # absent when off, as in runs recorded before it existed


def own_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A checkpointed state without the base class's moving average: what a subclass restores itself."""
    return {k: v for k, v in state.items() if not k.startswith(EMA_PREFIX)}
