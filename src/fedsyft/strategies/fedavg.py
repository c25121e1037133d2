"""FedAvg and FedProx: the sites' answers averaged by ``n_train``; FedProx adds a proximal term on the site."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..aggregate import Params, fedavg
from ..sites.base import SiteResult
from .base import Strategy


class FedAvg(Strategy):
    """Federated averaging (McMahan et al. 2017): the sites' parameters averaged, weighted by ``n_train``.

    The default strategy. Options (:class:`~fedsyft.strategies.base.Strategy`): client
    sampling, ``weighted`` (False: a plain mean), ``ema``.
    """

    name = "fedavg"
    title = "FedAvg"

    def aggregate_fit(self, round_no: int, params: Params | None, results: Mapping[str, SiteResult]) -> Params:
        return fedavg([(r.params, r.n_train) for r in results.values()], weighted=self.weighted)


class FedProx(FedAvg):
    """FedProx (Li et al. 2020): each site minimises its loss + mu/2 |w - w_global|^2.

    The proximal term keeps local models near the global one when sites' data differ;
    aggregation is FedAvg's. With differential privacy the term is data-independent and
    costs nothing. Its defaults, ``mu`` included, are declared in :mod:`~fedsyft.strategies.options`.
    """

    name = "fedprox"
    title = "FedProx"

    def __init__(self, mu: float | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.mu = self._option("mu", mu)

    def site_config(self, site: str, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "mu": self.mu}
