"""Server optimizers (Reddi et al. 2021, "Adaptive Federated Optimization"): FedAvgM, FedAdam, FedYogi.

Each round the sites train as in FedAvg; the researcher treats the change of the
averaged model, ``delta = fedavg(answers) - w``, as a pseudo-gradient and takes one
optimizer step with it. The state (momentum, second moments) lives on the researcher's
side and is checkpointed, so a resumed run continues exactly. Being post-processing of
what the sites released, they cost no privacy under DP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..aggregate import Params, fedavg
from ..sites.base import SiteResult
from .base import Strategy, own_state, zeros_like_model


class _ServerOptimizer(Strategy):
    def __init__(self, server_lr: float, **kwargs: Any):
        super().__init__(**kwargs)
        if not server_lr > 0:
            raise ValueError(f"server_lr must be positive, got {server_lr}")
        self.server_lr = float(server_lr)
        self._state: dict[str, dict[str, np.ndarray]] = {}

    def aggregate_fit(self, round_no: int, params: Params | None, results: Mapping[str, SiteResult]) -> Params:
        average = fedavg([(r.params, r.n_train) for r in results.values()], weighted=self.weighted)
        current = params if params is not None else zeros_like_model(average)
        delta = {k: np.asarray(average[k], np.float64) - np.asarray(current[k], np.float64) for k in current}
        step = self.step(delta)
        return {k: (np.asarray(current[k], np.float64) + step[k]).astype(np.float32) for k in current}

    def step(self, delta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _slot(self, name: str, like: dict[str, np.ndarray], fill: float = 0.0) -> dict[str, np.ndarray]:
        if name not in self._state:
            self._state[name] = {k: np.full_like(v, fill) for k, v in like.items()}
        return self._state[name]

    def state(self) -> dict[str, np.ndarray]:
        return {**super().state(), **{f"{slot}.{k}": v for slot, arrays in self._state.items() for k, v in arrays.items()}}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        super().load_state(state)
        self._state = {}
        for key, value in own_state(state).items():
            slot, k = key.split(".", 1)
            self._state.setdefault(slot, {})[k] = np.asarray(value, np.float64)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "server_lr": self.server_lr}


class FedAvgM(_ServerOptimizer):
    """FedAvg with server momentum (Hsu et al. 2019): ``v = momentum * v + delta``, ``w += server_lr * v``."""

    name = "fedavgm"
    title = "FedAvgM"

    def __init__(self, server_lr: float = 1.0, server_momentum: float = 0.9, **kwargs: Any):
        super().__init__(server_lr, **kwargs)
        if not 0 <= server_momentum < 1:
            raise ValueError(f"server_momentum must be in [0, 1), got {server_momentum}")
        self.momentum = float(server_momentum)

    def step(self, delta):
        v = self._slot("momentum", delta)
        for k in delta:
            v[k] = self.momentum * v[k] + delta[k]
        return {k: self.server_lr * v[k] for k in delta}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "server_momentum": self.momentum}


class FedAdam(_ServerOptimizer):
    """FedAdam (Reddi et al. 2021): Adam on the pseudo-gradient, ``w += lr * m / (sqrt(v) + tau)``."""

    name = "fedadam"
    title = "FedAdam"

    def __init__(self, server_lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3,
                 **kwargs: Any):
        super().__init__(server_lr, **kwargs)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and tau > 0):
            raise ValueError(f"need 0 <= beta1, beta2 < 1 and tau > 0, got {beta1}, {beta2}, {tau}")
        self.beta1, self.beta2, self.tau = float(beta1), float(beta2), float(tau)

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return self.beta2 * v + (1 - self.beta2) * d2

    def step(self, delta):
        m = self._slot("m", delta)
        v = self._slot("v", delta, fill=self.tau ** 2)  # the paper's v_{-1} >= tau^2
        for k in delta:
            m[k] = self.beta1 * m[k] + (1 - self.beta1) * delta[k]
            v[k] = self.second_moment(v[k], delta[k] ** 2)
        return {k: self.server_lr * m[k] / (np.sqrt(v[k]) + self.tau) for k in delta}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "beta1": self.beta1, "beta2": self.beta2, "tau": self.tau}


class FedYogi(FedAdam):
    """FedYogi (Reddi et al. 2021): as FedAdam, with Yogi's additive second-moment update."""

    name = "fedyogi"
    title = "FedYogi"

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return v - (1 - self.beta2) * d2 * np.sign(v - d2)
