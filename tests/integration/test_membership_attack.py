"""The float32-overflow membership attack (tests/membership.py) against the approved ``local_train_dp``.

In process (fast): it must flag the members of a 40-row shard against the unhardened
function kept in tests/legacy_dp.py (so the attack can fail a test), and none against
``fedsyft.task.local_train_dp``. On a real private datasite (integration): as the
researcher, with only the approved function and the site's default budget, one call per
candidate must not tell any of the site's 40 rows from 40 other MNIST images, and the
ledger must have charged every call it served.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import free_port_base
from legacy_dp import legacy_local_train_dp
from membership import CONFIG, kind, membership_attack

MEMBERS, OUTSIDERS = slice(0, 40), slice(1000, 1040)  # MNIST training rows: on the site / not on it


def _in_process(function: Callable[..., dict], X: np.ndarray, y: np.ndarray) -> Callable[[dict, dict], dict]:
    """``call(params, config)`` running ``function`` on (X, y) as a site would.

    A site's guard may add public fields to a private call's config (the hardened function
    takes the public row count ``rows``); the legacy function refuses that key. So ``rows``
    is added only when the function asks for it by name.
    """
    data = (X, y)
    first = function(data, {}, dict(CONFIG))
    extra = {"rows": len(y)} if "'rows'" in str(first.get("error", "")) else {}
    return lambda params, config: function(data, params, {**config, **extra})


def _summary(flagged_members: int, flagged_outsiders: int, answers: list[Any]) -> str:
    half = len(answers) // 2
    return (f"{flagged_members} of {half} members and {flagged_outsiders} of {half} outsiders flagged; "
            f"member kinds {dict(Counter(map(kind, answers[:half])))}, "
            f"outsider kinds {dict(Counter(map(kind, answers[half:])))}")


def _assert_no_member_told_apart(flagged_members: int, flagged_outsiders: int, answers: list[Any]) -> None:
    half = len(answers) // 2
    same_kinds = Counter(map(kind, answers[:half])) == Counter(map(kind, answers[half:]))
    assert same_kinds and flagged_members == 0, _summary(flagged_members, flagged_outsiders, answers)


@pytest.fixture(scope="module")
def shard(mnist):
    return mnist.train.subset(MEMBERS)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_the_attack_tells_members_apart_against_the_legacy_function(mnist, shard):
    """The attack can fail a test: the unhardened function's model turns NaN exactly for the site's rows."""
    call = _in_process(legacy_local_train_dp, shard.X, shard.y)
    flagged_members, flagged_outsiders, answers = membership_attack(call, shard.X, mnist.train.X[OUTSIDERS])
    assert flagged_members >= 38 and flagged_outsiders <= 2, _summary(flagged_members, flagged_outsiders, answers)


def test_the_attack_tells_no_member_apart_against_local_train_dp(mnist, shard):
    from fedsyft.task import local_train_dp

    call = _in_process(local_train_dp, shard.X, shard.y)
    assert kind(call({}, dict(CONFIG))).startswith("finite")  # the config trains: refusals below are not by format
    _assert_no_member_told_apart(*membership_attack(call, shard.X, mnist.train.X[OUTSIDERS]))
    # Templates at the largest coefficient the function accepts: every answer is a finite model.
    flagged_members, flagged_outsiders, answers = membership_attack(call, shard.X, mnist.train.X[OUTSIDERS],
                                                                    at_bound=True)
    assert all(kind(a).startswith("finite") for a in answers)
    _assert_no_member_told_apart(flagged_members, flagged_outsiders, answers)


@pytest.fixture(scope="module")
def owner(shard, tmp_path_factory):
    """One real private datasite (default budget) holding MNIST training rows 0-39."""
    from fedsyft.datasite.launch import Datasites

    ds = Datasites([shard], port_base=free_port_base(1), state_dir=tmp_path_factory.mktemp("membership-state"),
                   names=["Membership"], private=True)
    ds.start()
    yield ds
    ds.stop()


@pytest.mark.integration
def test_a_private_datasite_tells_the_researcher_no_member(owner, mnist, shard):
    from fedsyft.datasite.launch import DEFAULT_EPSILON_BUDGET
    from fedsyft.experiment import request_approval
    from fedsyft.sites.syft_site import SyftSite

    researcher = SyftSite.connect(owner.sites[0].credentials)
    request_approval([researcher], 60, "local_train_dp")

    def call(params: dict, config: dict) -> dict:
        return researcher.call("local_train_dp", global_params=params, config=config)

    assert kind(call({}, dict(CONFIG))).startswith("finite")  # the config trains: refusals below are not by format
    flagged_members, flagged_outsiders, answers = membership_attack(call, shard.X, mnist.train.X[OUTSIDERS])
    status = researcher.privacy_query({"query": "status"})["privacy"]
    charges = json.loads(owner.sites[0].ledger.read_text())["charges"]
    served = 1 + sum(isinstance(a, dict) and "call" in a.get("privacy", {}) for a in answers)  # + the check above
    print(f"\n{_summary(flagged_members, flagged_outsiders, answers)}; {len(answers) + 1} calls, "
          f"{len(charges)} charged, ε spent {status['epsilon_spent']:.6f} of {status['epsilon_budget']:g}")
    # Every call the guard served was charged once; huge noise makes the whole attack cost almost nothing.
    assert len(charges) == served and status["epsilon_budget"] == DEFAULT_EPSILON_BUDGET
    assert 0 < status["epsilon_spent"] <= 0.05
    _assert_no_member_told_apart(flagged_members, flagged_outsiders, answers)
    # Ten and ten more, with templates at the largest coefficient the site accepts: finite models for all.
    at_bound = membership_attack(call, shard.X[:10], mnist.train.X[OUTSIDERS][:10], at_bound=True)
    assert all(kind(a).startswith("finite") for a in at_bound[2])
    _assert_no_member_told_apart(*at_bound)


@pytest.mark.integration
def test_a_call_over_the_work_limit_is_refused_at_once_and_costs_no_budget(owner):
    """Today's maximum, 10,000 steps at sample rate 1, on a default private datasite: refused in under a second."""
    import time

    from fedsyft.experiment import request_approval
    from fedsyft.sites.syft_site import SyftSite

    researcher = SyftSite.connect(owner.sites[0].credentials)
    request_approval([researcher], 60, "local_train_dp")
    start = time.perf_counter()
    before = researcher.status("local_train_dp")
    status_seconds = time.perf_counter() - start  # PySyft's round trip alone
    assert before["limits"] == {"max_passes": 100.0, "max_concurrent": 2, "queue_seconds": 120.0}
    start = time.perf_counter()
    answer = researcher.call("local_train_dp", global_params={}, config={**CONFIG, "steps": 10_000})
    seconds = time.perf_counter() - start
    assert answer["error"].startswith("refused: this call asks for 10000 passes") and "at most 100" in answer["error"]
    # Before any work (10,000 full-batch steps would take minutes): as fast as a status answer, under a
    # second on a quiet machine (PySyft's round trip is most of it).
    assert seconds < min(5.0, status_seconds + 1.0), (seconds, status_seconds)
    after = researcher.status("local_train_dp")["privacy"]
    assert after["calls"] == before["privacy"]["calls"] and after["epsilon_spent"] == before["privacy"]["epsilon_spent"]
