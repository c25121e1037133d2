"""A site that runs the training function in this process: for simulation and tests."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from ..aggregate import Params
from ..data import Images
from ..privacy.guard import PrivacyGuard, public_row_count
from ..task import TRAINING_FUNCTIONS, is_private_config
from .base import SiteError, SiteResult, parse_output, payload_bytes
from .simulation import load_training_libraries


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


_controller = None


@contextmanager
def _one_blas_thread():
    """Hold BLAS at one thread while any in-process site trains (one thread per fit is fastest).

    The limit is process-wide: with several sites in one process, the first to finish
    would restore the old thread count under the others, and results would depend on
    timing. Counting users here keeps the limit until the last one is done. The
    controller scans the loaded libraries once (a scan costs ~3 ms, a small site's fit ~4).
    """
    global _blas_users, _blas_limiter, _controller
    with _blas_lock:
        if _controller is None:
            load_training_libraries()  # so that the scan finds scipy's own OpenBLAS too
            _controller = ThreadpoolController()
        if _blas_users == 0:
            _blas_limiter = _controller.limit(limits=1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()


class LocalSite:
    """Holds its shard in memory and calls the training functions of :mod:`fedsyft.task` directly.

    It runs the very functions a datasite approves, so a simulation's numbers are
    the numbers the real federation gives on the same shards.

    Parameters
    ----------
    name, data : the site's name and private shard.
    privacy : a :class:`~fedsyft.privacy.PrivacyGuard` makes the site private, as a
        datasite launched with a budget is: it accepts only DP calls and charges each one
        to its ledger (in memory for a simulation).
    seed : the site's own randomness for DP-SGD's sampling and noise (None: OS entropy).
        A seeded simulation repeats itself; nothing the researcher sends seeds it.

    With ``engine`` set (see :func:`fedsyft.sites.simulation.engine_for`) the training
    itself runs in the engine's worker processes; a private site's guard still charges
    its ledger here first.
    """

    def __init__(self, name: str, data: Images, privacy: PrivacyGuard | None = None, seed: int | tuple[int, ...] | None = None):
        self.name = name
        self.data = data
        self.privacy = privacy
        if privacy is not None and privacy.rows is None:
            privacy.rows = public_row_count(len(data))  # as on a datasite: the exact count stays private
        self._entropy = np.random.SeedSequence(seed) if seed is not None else None
        self.engine = None

    def _site_randomness(self):
        # A fresh child per call: calls differ, a seeded simulation still repeats itself.
        return None if self._entropy is None else self._entropy.spawn(1)[0]

    def train(self, global_params: Params | None, config: dict[str, Any]) -> SiteResult:
        sent = payload_bytes(global_params, config)
        start = time.perf_counter()
        worker = {}  # the engine's own time for the call, when there is an engine
        if is_private_config(config):
            if self.privacy is None:
                raise SiteError(self.name, "this site is not private: it runs local_train, not local_train_dp")
            randomness = self._site_randomness()
            out = self.privacy.run(dict(config), lambda prepared: self._run("local_train_dp", global_params, prepared,
                                                                            randomness, worker),
                                   requester="simulation")
        else:
            if self.privacy is not None:
                raise SiteError(self.name, "this site is private (differential privacy): it runs only "
                                           "local_train_dp; pass an epsilon")
            out = self._run("local_train", global_params, config, None, worker)
        seconds = time.perf_counter() - start - worker.get("waited", 0.0)
        return parse_output(self.name, out, seconds, sent)

    def _run(self, function: str, global_params: Params | None, config: dict, randomness: Any,
             worker: dict) -> dict:
        if self.engine is not None:
            sent = time.perf_counter()
            out, seconds = self.engine.train(self.name, function, global_params, dict(config), randomness)
            # A call may wait for a free worker (the engine keeps the next one queued); that
            # wait is the simulation's, not the site's, so its seconds leave it out.
            worker["waited"] = max(0.0, time.perf_counter() - sent - seconds)
            return out
        data = (self.data.X, self.data.y) if randomness is None else (self.data.X, self.data.y, randomness)
        with _one_blas_thread():
            return TRAINING_FUNCTIONS[function](data, global_params, dict(config))

    def restore_spending(self, config: dict[str, Any], calls: int) -> None:
        """Charge an in-memory ledger for ``calls`` private calls this site served before a resume.

        A simulated site's ledger lives in memory, so a resumed simulation would otherwise
        start from an unspent budget and report, and allow, more than ε. A ledger on disk
        (a datasite's) still holds its charges and is left alone.
        """
        if self.privacy is None or self.privacy.ledger.path is not None:
            return
        for _ in range(calls):
            self.privacy.admit(dict(config), requester="simulation, before the resume")

    def status(self, function_name: str) -> dict[str, Any]:
        """An in-process site's status: its ledger's summary when private; it sets no work limits."""
        return self.privacy_query({"query": "status"}) if self.privacy is not None else {}

    def privacy_query(self, query: dict[str, Any]) -> dict[str, Any]:
        if self.privacy is None:
            return {"error": "this site is not private"}
        if not isinstance(query, dict) or "query" not in query:  # a training config here would be charged
            return {"error": "not a query: pass {'query': 'status'} or a plan"}
        return self.privacy.run(query, lambda _: {"error": "not a query"})

    def __repr__(self) -> str:
        return f"LocalSite({self.name!r}, n={len(self.data)})"
