"""Federated averaging (McMahan et al., 2017) as pure functions on parameter dicts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Params = dict[str, np.ndarray]


def fedavg(updates: Sequence[tuple[Params, int]], weighted: bool = True) -> Params:
    """Average the sites' parameters, weighting each by its number of training rows.

    Parameters
    ----------
    updates : sequence of ``(params, n_train)``
        One entry per site that answered this round; every ``params`` must have
        the same keys and shapes.
    weighted : bool
        ``True`` (FedAvg) weights site ``i`` by ``n_i / sum(n)``; ``False`` takes the
        plain mean, as the replaced project did.

    Returns
    -------
    dict of float32 arrays: the new global parameters. The sum is taken in
    float64 so the result does not depend on float32 rounding order.
    """
    if not updates:
        raise ValueError("fedavg needs at least one update")
    keys = set(updates[0][0])
    for params, n in updates:
        if set(params) != keys:
            raise ValueError(f"parameter keys differ between sites: {sorted(keys)} vs {sorted(params)}")
        if n <= 0:
            raise ValueError(f"n_train must be positive, got {n}")
    counts = np.array([n for _, n in updates], dtype=np.float64)
    weights = counts / counts.sum() if weighted else np.full(len(updates), 1.0 / len(updates))
    result = {}
    for key in sorted(keys):
        stacked = np.stack([np.asarray(p[key], dtype=np.float64) for p, _ in updates])
        result[key] = np.tensordot(weights, stacked, axes=1).astype(np.float32)
    return result
