"""The owner's work limits as pure logic: what a call costs in passes, and which calls and plans are refused."""

from __future__ import annotations

import pytest

from fedsyft.limits import DEFAULT_MAX_PASSES, WorkLimits, passes, plan_refusal
from fedsyft.privacy import PrivatePlan
from fedsyft.privacy.plan import sampling_for
from fedsyft.task import DEFAULT_TRAIN_CONFIG

TODAYS_MAXIMUM_DP = {"noise_multiplier": 1e4, "sample_rate": 1.0, "steps": 10_000, "clip": 1.0, "lr": 1.0, "l2": 0.0}
TODAYS_MAXIMUM_LBFGS = {**DEFAULT_TRAIN_CONFIG, "local_iters": 1000}


def test_a_call_costs_its_passes_over_the_rows():
    assert passes(TODAYS_MAXIMUM_DP) == 10_000
    assert passes({**TODAYS_MAXIMUM_DP, "steps": 50, "sample_rate": 0.04}) == pytest.approx(2.0)
    assert passes(TODAYS_MAXIMUM_LBFGS) == 1000
    assert passes({"query": "status"}) is None and passes("not a dict") is None and passes({"steps": "x"}) is None


def test_the_default_limits_refuse_todays_maxima_with_one_line_naming_the_limit():
    limits = WorkLimits()
    for config in (TODAYS_MAXIMUM_DP, TODAYS_MAXIMUM_LBFGS):
        reason = limits.refusal(config)
        assert reason and "\n" not in reason and f"at most {DEFAULT_MAX_PASSES:g}" in reason and "max_passes" in reason


@pytest.mark.parametrize("rows", [40, 227, 600, 30_000, None])
def test_the_default_plans_fit_the_default_limits(rows):
    q, steps = sampling_for(rows)
    plan = PrivatePlan(epsilon=1.0, rounds=20, sample_rate=q, steps=steps)
    assert WorkLimits().refusal(plan.train_config()) is None
    assert WorkLimits().refusal(DEFAULT_TRAIN_CONFIG) is None


def test_a_plan_over_a_sites_limits_is_refused_before_round_one_naming_the_setting():
    reason = plan_refusal("MNIST Part 1", {"max_passes": 1.0}, PrivatePlan(epsilon=1.0).train_config())
    assert reason.startswith("MNIST Part 1: this call asks for 2 passes") and "dp_steps x sample_rate" in reason
    assert plan_refusal("MNIST Part 1", None, TODAYS_MAXIMUM_LBFGS) is None  # a site that publishes no limits


@pytest.mark.parametrize("bad", [dict(max_passes=0), dict(max_passes=float("inf")), dict(max_concurrent=0),
                                 dict(max_concurrent=1.5), dict(queue_seconds=-1)])
def test_limits_out_of_range_are_refused_naming_the_parameter(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        WorkLimits(**bad)


def test_limits_round_trip_and_refuse_unknown_keys():
    limits = WorkLimits(max_passes=10, max_concurrent=1, queue_seconds=0)
    assert WorkLimits.from_dict(limits.to_dict()) == limits and WorkLimits.from_dict(None) == WorkLimits()
    with pytest.raises(ValueError, match="unknown"):
        WorkLimits.from_dict({"max_calls": 3})
