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


def synthetic_mock(real: Images, seed: int, rows: int | None = DEFAULT_MOCK_ROWS) -> Images:
    """Random pixels and labels shaped like ``real``.

    Parameters
    ----------
    real : the private data (only its shapes, dtypes and label set are used).
    seed : seeds the generator.
    rows : number of mock rows; ``None`` for as many as ``real`` has.

    Labels cycle through every class present in ``real`` (the label set is public
    by design), then are shuffled; pixels are uniform noise 0-255.
    """
    n = len(real) if rows is None else int(rows)
    if n < 1:
        raise ValueError(f"mock rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, *real.X.shape[1:]), dtype=real.X.dtype)
    y = rng.permutation(np.resize(np.unique(real.y), n)).astype(real.y.dtype)
    return Images(X, y)
