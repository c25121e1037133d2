"""FedAvg and FedProx: the sites' answers averaged by ``n_train``; FedProx adds a proximal term on the site."""

from __future__ import annotations

from typing import Any

from .base import Strategy


class FedAvg(Strategy):
    """Federated averaging (McMahan et al. 2017): see :class:`~fedsyft.strategies.base.Strategy`."""


class FedProx(Strategy):
    """FedProx (Li et al. 2020): each site minimises its loss + mu/2 |w - w_global|^2.

    The proximal term keeps local models near the global one when sites' data differ;
    aggregation is FedAvg's. With differential privacy the term is data-independent and
    costs nothing.
    """

    name = "fedprox"
    title = "FedProx"

    def __init__(self, mu: float = 0.01, **kwargs: Any):
        super().__init__(**kwargs)
        if not 0 <= mu <= 1e3:
            raise ValueError(f"mu must be between 0 and 1000, got {mu}")
        self.mu = float(mu)

    def site_config(self, site: str, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "mu": self.mu}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mu": self.mu}
