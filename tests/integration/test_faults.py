"""Faults on real datasites: a site killed mid-run, a restart, errors inside the training function."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import free_port_base

from fedsyft.datasite.launch import Datasites, serving
from fedsyft.experiment import RunConfig, connect_sites, request_approval, run_experiment
from fedsyft.sites import SiteError

pytestmark = pytest.mark.integration


def test_a_killed_site_is_left_out_and_rejoins_after_a_restart(small_shards, mnist, tmp_path):
    shards = [s.subset(slice(0, 1500)) for s in small_shards]
    config = dict(local_iters=5)
    out = tmp_path / "run"
    restarted = None
    with Datasites(shards, port_base=free_port_base(2), state_dir=tmp_path / "state", private=False) as datasites:
        try:
            sites = connect_sites([s.credentials for s in datasites.sites])
            request_approval(sites, timeout=60)
            run_experiment(sites, RunConfig(rounds=1, **config), mnist.test, out)

            victim = datasites.sites[1]
            os.kill(victim.pid, signal.SIGKILL)
            victim.process.wait(timeout=10)
            result = run_experiment(sites, RunConfig(rounds=2, **config), mnist.test, out, resume=True,
                                    site_timeout=60)
            failed = result.history.rounds[1]
            assert list(failed.sites) == ["MNIST Part 1"] and list(failed.failures) == ["MNIST Part 2"]
            assert "lost connection" in failed.failures["MNIST Part 2"]
            assert json.loads((out / "metrics.json").read_text())["rounds"][1]["failures"]["MNIST Part 2"]

            # the data owner restarts the datasite from its state folder; the researcher's session carries on
            restarted = subprocess.Popen([sys.executable, "-m", "fedsyft.datasite.server", str(victim.state)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while not serving(victim.url):
                assert time.monotonic() < deadline and restarted.poll() is None, "restarted datasite did not serve"
                time.sleep(0.5)
            result = run_experiment(sites, RunConfig(rounds=3, **config), mnist.test, out, resume=True)
            back = result.history.rounds[2]
            assert list(back.sites) == ["MNIST Part 1", "MNIST Part 2"] and back.failures == {}
        finally:
            if restarted is not None and restarted.poll() is None:
                restarted.send_signal(signal.SIGTERM)
                restarted.wait(timeout=30)


def test_an_error_inside_the_function_reaches_the_researcher_and_the_site_stays_healthy(researcher_sites):
    site = researcher_sites[0]
    config = RunConfig(local_iters=2).train_config()
    bad = {"coef": np.zeros((10, 5), np.float32), "intercept": np.zeros(10, np.float32)}
    with pytest.raises(SiteError, match="training failed on the datasite: ValueError: global params must be coef"):
        site.train(bad, config)
    with pytest.raises(SiteError, match="NaN or inf"):
        site.train({"coef": np.full((10, 784), np.inf, np.float32), "intercept": np.zeros(10, np.float32)}, config)
    with pytest.raises(SiteError, match="config must have the keys"):
        site.train(None, {**config, "unexpected": 1})
    assert site.train(None, config).n_train == 2700  # the next call works
