"""Split a data set's row indices into disjoint shards, one per datasite.

Pure and seeded: the same arguments always give the same shards, and together
the shards cover every index exactly once.
"""

from __future__ import annotations

import numpy as np


def _check(n: int, num_shards: int) -> None:
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    if n < num_shards:
        raise ValueError(f"cannot split {n} rows into {num_shards} non-empty shards")


def iid(n: int, num_shards: int, seed: int) -> list[np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into ``num_shards`` near-equal parts.

    Returns
    -------
    list of int64 arrays, sorted within each shard, disjoint, covering ``range(n)``.
    """
    _check(n, num_shards)
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, num_shards)]


def dirichlet(labels: np.ndarray, num_shards: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Label-skewed shards: each class is spread over the shards in Dirichlet(alpha) proportions.

    Small ``alpha`` (0.1) gives each shard a few dominant classes; large ``alpha``
    (100) approaches ``iid``. A shard may lack some classes entirely.
    """
    labels = np.asarray(labels)
    _check(len(labels), num_shards)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    rng = np.random.default_rng(seed)
    shards: list[list[np.ndarray]] = [[] for _ in range(num_shards)]
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        cuts = (np.cumsum(rng.dirichlet(np.full(num_shards, alpha))) * len(rows)).astype(int)[:-1]
        for shard, part in zip(shards, np.split(rows, cuts)):
            shard.append(part)
    result = [np.sort(np.concatenate(parts)) for parts in shards]
    if any(len(r) == 0 for r in result):
        raise ValueError(f"alpha={alpha} left a shard empty with seed {seed}: use a larger alpha or fewer shards")
    return result
