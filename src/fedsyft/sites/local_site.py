"""A site that runs the training function in this process: for simulation and tests."""

from __future__ import annotations

import time
from typing import Any

from ..aggregate import Params
from ..data import Images
from ..task import local_train
from .base import SiteResult, parse_output, payload_bytes


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
        out = local_train((self.data.X, self.data.y), global_params, dict(config))
        return parse_output(self.name, out, time.perf_counter() - start, sent)

    def __repr__(self) -> str:
        return f"LocalSite({self.name!r}, n={len(self.data)})"
