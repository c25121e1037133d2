"""A site that runs the training function in this process: for simulation and tests."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any

from threadpoolctl import threadpool_limits

from ..aggregate import Params
from ..data import Images
from ..task import local_train
from .base import SiteResult, parse_output, payload_bytes


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def _one_blas_thread():
    """Hold BLAS at one thread while any in-process site trains.

    ``local_train`` limits BLAS itself, but the limit is process-wide: with several
    sites in one process, the first to finish would restore the old thread count
    under the others, and results would depend on timing. Counting users here keeps
    the limit until the last one is done.
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()


class LocalSite:
    """Holds its shard in memory and calls :func:`fedsyft.task.local_train` directly.

    It runs the very function a datasite approves, so a simulation's numbers are
    the numbers the real federation gives on the same shards.
    """

    def __init__(self, name: str, data: Images):
        self.name = name
        self.data = data

    def train(self, global_params: Params | None, config: dict[str, Any]) -> SiteResult:
        sent = payload_bytes(global_params, config)
        start = time.perf_counter()
        with _one_blas_thread():
            out = local_train((self.data.X, self.data.y), global_params, dict(config))
        return parse_output(self.name, out, time.perf_counter() - start, sent)

    def __repr__(self) -> str:
        return f"LocalSite({self.name!r}, n={len(self.data)})"
