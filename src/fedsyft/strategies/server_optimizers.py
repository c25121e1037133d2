"""Server optimizers (Reddi et al. 2021, "Adaptive Federated Optimization"): FedAvgM, FedAdam, FedYogi.

Each round the sites train as in FedAvg; the researcher treats the change of the
averaged model, ``delta = fedavg(answers) - w``, as a pseudo-gradient and takes one
optimizer step with it. The state (momentum, second moments) lives on the researcher's
side and is checkpointed, so a resumed run continues exactly. Being post-processing of
what the sites released, they cost no privacy under DP. Their defaults (a few local
iterations, the server step, and smoothing when sites are sampled) are declared in
:mod:`fedsyft.strategies.options`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..aggregate import Params, fedavg
from ..sites.base import SiteResult
from .base import FitInstruction, Strategy, zeros_like_model


class _ServerOptimizer(Strategy):
    """FedAvg's average as a pseudo-gradient, one optimizer step per round (:meth:`step`, abstract)."""

    def __init__(self, server_lr: float | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.server_lr = self._option("server_lr", server_lr)
        self._state: dict[str, dict[str, np.ndarray]] = {}
        self._center: np.ndarray | None = None

    def configure_fit(self, round_no: int, params: Params | None, sites: Sequence[str],
                      config: dict[str, Any]) -> dict[str, FitInstruction]:
        # A run that sends its sites a public centre c has them fit W (x - c) + (b + W c): the step is taken in
        # those coordinates too, where a site's fit moves the intercept b + W c little. In the model's own
        # (W, b) the intercept must follow every change of W c, which a per-coordinate step cannot.
        center = config.get("center")
        self._center = None if center is None else np.asarray(center, np.float64)
        return super().configure_fit(round_no, params, sites, config)

    def aggregate_fit(self, round_no: int, params: Params | None, results: Mapping[str, SiteResult]) -> Params:
        average = self._centred(fedavg([(r.params, r.n_train) for r in results.values()], weighted=self.weighted))
        current = self._centred(params if params is not None else zeros_like_model(average))
        delta = {k: average[k] - current[k] for k in current}
        step = self.step(delta)
        return self._centred({k: current[k] + step[k] for k in current}, back=True)

    def _centred(self, params: Params, back: bool = False) -> dict[str, np.ndarray]:
        """``params`` in float64 in the sites' centred coordinates (intercept b + W c), or ``back`` in float32."""
        out = {k: np.asarray(v, np.float64) for k, v in params.items()}
        if self._center is not None:
            out["intercept"] = out["intercept"] + (-1 if back else 1) * (out["coef"] @ self._center)
        return {k: v.astype(np.float32) for k, v in out.items()} if back else out

    @abstractmethod
    def step(self, delta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The change of the global parameters for the pseudo-gradient ``delta`` (updating the optimizer's slots)."""

    def _slot(self, name: str, like: dict[str, np.ndarray], fill: float = 0.0) -> dict[str, np.ndarray]:
        if name not in self._state:
            self._state[name] = {k: np.full_like(v, fill) for k, v in like.items()}
        return self._state[name]

    def state_dict(self) -> dict[str, Any]:
        """The moving average (if any) and the optimizer's buffers by dotted name, ``"m.coef"``.

        The buffers are named as a torch module names its tensors (slot, then parameter), which
        keeps the checkpoint's keys those of runs written before the state was nested.
        """
        return {**super().state_dict(),
                **{f"{slot}.{k}": v for slot, arrays in self._state.items() for k, v in arrays.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._state = {}
        for key, value in state.items():
            if isinstance(value, Mapping):  # another part's state, e.g. the moving average's
                continue
            slot, k = key.split(".", 1)
            self._state.setdefault(slot, {})[k] = np.asarray(value, np.float64)


class FedAvgM(_ServerOptimizer):
    """FedAvg with server momentum (Hsu et al. 2019): ``v = momentum * v + delta``, ``w += server_lr * v``."""

    name = "fedavgm"
    title = "FedAvgM"

    def __init__(self, server_lr: float | None = None, server_momentum: float | None = None, **kwargs: Any):
        super().__init__(server_lr, **kwargs)
        self.server_momentum = self._option("server_momentum", server_momentum)

    def step(self, delta):
        v = self._slot("momentum", delta)
        for k in delta:
            v[k] = self.server_momentum * v[k] + delta[k]
        return {k: self.server_lr * v[k] for k in delta}


class FedAdam(_ServerOptimizer):
    """FedAdam (Reddi et al. 2021): Adam on the pseudo-gradient, ``w += lr * m / (sqrt(v) + tau)``."""

    name = "fedadam"
    title = "FedAdam"

    def __init__(self, server_lr: float | None = None, beta1: float | None = None, beta2: float | None = None,
                 tau: float | None = None, **kwargs: Any):
        super().__init__(server_lr, **kwargs)
        self.beta1, self.beta2, self.tau = (self._option(name, value)
                                            for name, value in (("beta1", beta1), ("beta2", beta2), ("tau", tau)))

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return self.beta2 * v + (1 - self.beta2) * d2

    def step(self, delta):
        m = self._slot("m", delta)
        v = self._slot("v", delta, fill=self.tau ** 2)  # the paper's v_{-1} >= tau^2
        for k in delta:
            m[k] = self.beta1 * m[k] + (1 - self.beta1) * delta[k]
            v[k] = self.second_moment(v[k], delta[k] ** 2)
        return {k: self.server_lr * m[k] / (np.sqrt(v[k]) + self.tau) for k in delta}


class FedYogi(FedAdam):
    """FedYogi (Reddi et al. 2021): as FedAdam, with Yogi's additive second-moment update."""

    name = "fedyogi"
    title = "FedYogi"

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return v - (1 - self.beta2) * d2 * np.sign(v - d2)
