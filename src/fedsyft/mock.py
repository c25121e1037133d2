"""Synthetic mock data that a researcher may see in place of a private asset.

The mock has the real asset's row shape, dtypes and label set, so code written
against it runs on the real data, but every value is drawn from a seeded random
generator: no real row, and no statistic of the real pixels, is in it.

Its row count is a choice: PySyft 0.9.5 runs approved code on the mock as well as
on the private data at every call (the mock half of the result "twin"), so a
full-size mock doubles each round's compute. The default is 1,000 rows.
"""

from __future__ import annotations

import numpy as np

from .data import Images

DEFAULT_MOCK_ROWS = 1000


def synthetic_mock(real: Images, seed: int, rows: int | None = DEFAULT_MOCK_ROWS,
                   schema: dict | None = None) -> Images:
    """Random rows and labels shaped like ``real``.

    Parameters
    ----------
    real : the private data (only its shapes, dtypes and label set are used).
    seed : seeds the generator.
    rows : number of mock rows; ``None`` for as many as ``real`` has.
    schema : a tabular federation's public schema: features are then drawn uniformly
        within its declared ranges and labels from its classes (nothing of ``real`` but
        its shape). None: MNIST, uniform pixels 0-255.

    Labels cycle through every class present in ``real`` (the label set is public
    by design), then are shuffled.
    """
    n = len(real) if rows is None else int(rows)
    if n < 1:
        raise ValueError(f"mock rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)
    if schema is not None:
        low, high = np.array(list(schema["ranges"].values()), dtype=np.float64).T
        X = rng.uniform(low, high, size=(n, len(low))).astype(np.float32)
        y = rng.permutation(np.resize(np.arange(len(schema["classes"])), n)).astype(np.int64)
        return Images(X, y)
    X = rng.integers(0, 256, size=(n, *real.X.shape[1:]), dtype=real.X.dtype)
    y = rng.permutation(np.resize(np.unique(real.y), n)).astype(real.y.dtype)
    return Images(X, y)
