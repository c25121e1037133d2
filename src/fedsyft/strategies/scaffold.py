"""SCAFFOLD (Karimireddy et al. 2020): control variates that correct each site's drift.

The researcher keeps the server control variate ``c`` and one ``c_i`` per site. Each
site trains with its gradient shifted by ``c - c_i`` (sent in its config as
``correction``) and the researcher updates ``c_i`` from the answer:

- a non-private site (``task.local_train``, L-BFGS) returns its gradient at the global
  model, ``control_variate``: option I of the paper (option II needs a step size and a
  step count, which L-BFGS does not have);
- a private site (``task.local_train_dp``, K noisy SGD steps of size lr) returns nothing
  extra: the researcher applies option II, ``c_i+ = c_i - c + (x - y_i) / (K lr)``, to the
  noised model it received, which is post-processing and so costs no privacy.

Then ``x += server_lr * mean(y_i - x)`` and ``c += sum(c_i+ - c_i) / N`` over the sites
that answered, N the number of sites (the paper's global step, uniform weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..aggregate import Params
from ..sites.base import SiteResult
from .base import FitInstruction, Strategy, zeros_like_model


class Scaffold(Strategy):
    """SCAFFOLD with a server step size ``server_lr``.

    Its defaults (:mod:`~fedsyft.strategies.options`) take a shorter server step than the
    paper's 1.0, which oscillates on skewed sites with L-BFGS's local fits, and few local iterations.
    """

    name = "scaffold"
    title = "SCAFFOLD"

    def __init__(self, server_lr: float | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.server_lr = self._option("server_lr", server_lr)
        self.c: Params | None = None
        self.c_sites: dict[str, Params] = {}
        self.n_sites = 0
        self._sent: dict[str, dict[str, Any]] = {}

    def configure_fit(self, round_no: int, params: Params | None, sites: Sequence[str],
                      config: dict[str, Any]) -> dict[str, FitInstruction]:
        self.n_sites = len(sites)
        if self.c is None:
            self.c = zeros_like_model(params, config)
        plan = super().configure_fit(round_no, params, sites, config)
        self._sent = {name: ins.config for name, ins in plan.items()}
        return plan

    def site_config(self, site: str, config: dict[str, Any]) -> dict[str, Any]:
        c_i = self.c_sites.get(site) or zeros_like_model(self.c)
        correction = {k: (self.c[k] - c_i[k]).astype(np.float32) for k in self.c}
        return {**config, "correction": correction}

    def aggregate_fit(self, round_no: int, params: Params | None, results: Mapping[str, SiteResult]) -> Params:
        x = {k: np.asarray(v, np.float64) for k, v in (params or zeros_like_model(self.c)).items()}
        change = {k: np.mean([np.asarray(r.params[k], np.float64) - x[k] for r in results.values()], axis=0)
                  for k in x}
        dc = {k: np.zeros_like(v) for k, v in x.items()}
        for name, result in results.items():
            c_i = self.c_sites.get(name) or zeros_like_model(self.c)
            new = result.extra.get("control_variate")
            if new is None:  # option II, from what the site released
                sent = self._sent[name]
                k_lr = int(sent["steps"]) * float(sent["lr"])
                new = {k: c_i[k] - self.c[k] + (x[k] - np.asarray(result.params[k], np.float64)) / k_lr for k in x}
            new = {k: np.asarray(new[k], np.float64) for k in x}
            for k in x:
                dc[k] += new[k] - c_i[k]
            self.c_sites[name] = {k: v.astype(np.float32) for k, v in new.items()}
        self.c = {k: (self.c[k] + dc[k] / max(self.n_sites, 1)).astype(np.float32) for k in x}
        return {k: (x[k] + self.server_lr * change[k]).astype(np.float32) for k in x}

    def state_dict(self) -> dict[str, Any]:
        """The moving average (if any), ``c`` and each site's ``c_i``: ``{"c": {...}, "ci": {site: {...}}}``."""
        out = super().state_dict()
        if self.c is not None:
            out["c"] = dict(self.c)
        if self.c_sites:
            out["ci"] = {site: dict(arrays) for site, arrays in self.c_sites.items()}
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        c = state.get("c")
        self.c = {k: np.asarray(v, np.float32) for k, v in c.items()} if c else None
        self.c_sites = {site: {k: np.asarray(v, np.float32) for k, v in arrays.items()}
                        for site, arrays in (state.get("ci") or {}).items()}
