"""Owner-set work limits on a real private datasite: calls at once, prompt status answers, plans checked up front.

One datasite of 300 MNIST rows whose owner allows 5,000 passes a call and one call at a
time, with a one-second queue. (Refusals of today's maxima under the default limits are in
test_membership_attack.py, on a default private site, and test_datasites.py, on a --no-dp one.)
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import free_port_base

from fedsyft.limits import WorkLimits

pytestmark = pytest.mark.integration

LIMITS = WorkLimits(max_passes=5000, max_concurrent=1, queue_seconds=1.0)
LONG = {"noise_multiplier": 1e4, "sample_rate": 1.0, "steps": 5000, "clip": 1.0, "lr": 1.0, "l2": 0.0}


@pytest.fixture(scope="module")
def limited(mnist, tmp_path_factory):
    from fedsyft.datasite.launch import Datasites

    ds = Datasites([mnist.train.subset(slice(2000, 2300))], port_base=free_port_base(1), names=["Limited"],
                   state_dir=tmp_path_factory.mktemp("limits-state"), private=True, limits=LIMITS)
    ds.start()
    yield ds
    ds.stop()


@pytest.fixture(scope="module")
def researcher(limited):
    from fedsyft.experiment import request_approval
    from fedsyft.sites.syft_site import SyftSite

    site = SyftSite.connect(limited.sites[0].credentials)
    request_approval([site], 60, "local_train_dp")
    return site


def test_the_limits_are_kept_with_the_state_and_published(limited, researcher):
    spec = json.loads((limited.sites[0].state / "site.json").read_text())
    assert WorkLimits.from_dict(spec["limits"]) == LIMITS
    assert WorkLimits.from_dict(researcher.status("local_train_dp")["limits"]) == LIMITS


def test_with_the_limits_worth_of_long_calls_in_flight_status_is_prompt_and_more_calls_wait_then_are_refused(
        limited, researcher):
    from fedsyft.sites.syft_site import SyftSite

    other = SyftSite.connect(limited.sites[0].credentials)  # a second session, as a second researcher would have
    other._remote_function("local_train_dp")
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.perf_counter()
        long_call = pool.submit(researcher.call, "local_train_dp", global_params={}, config=dict(LONG))
        time.sleep(2.0)  # the long call is running
        assert not long_call.done(), "the long call ended too soon to test anything"
        t = time.perf_counter()
        status = other.status("local_train_dp")
        status_seconds = time.perf_counter() - t
        t = time.perf_counter()
        second = other.call("local_train_dp", global_params={}, config={**LONG, "steps": 10})
        second_seconds = time.perf_counter() - t
        still_running = not long_call.done()
        first = long_call.result()
    print(f"\nlong call {time.perf_counter() - started:.1f} s; status in {status_seconds:.2f} s; "
          f"second call refused after {second_seconds:.2f} s")
    assert "privacy" in status and status_seconds < 5.0
    assert still_running, "the long call ended before the second call was refused: nothing was tested"
    assert second == {"error": "refused: this datasite stayed busy for 1 s (max_concurrent 1); try again later"}
    assert second_seconds >= 1.0  # it waited its turn (one second), then was refused
    assert "coef" in first
    logged = [json.loads(line) for line in limited.sites[0].audit_log.read_text().splitlines()]
    assert any(e.get("event") == "limit_refused" and "busy" in e["reason"] for e in logged)


def test_a_run_over_a_sites_limit_fails_before_round_one_naming_the_setting(researcher, mnist, tmp_path):
    from fedsyft.experiment import RunConfig, run_experiment
    from fedsyft.sites import SiteError

    calls = researcher.status("local_train_dp")["privacy"]["calls"]
    config = RunConfig(rounds=1, epsilon=5.0, sample_rate=1.0, dp_steps=6000)
    with pytest.raises(SiteError, match=r"asks for 6000 passes.*at most 5000.*lower dp_steps x sample_rate"):
        run_experiment([researcher], config, mnist.test, tmp_path / "run")
    assert researcher.status("local_train_dp")["privacy"]["calls"] == calls  # nothing ran, nothing was charged
