"""Differential privacy, the pure parts: accountant, ledger, guard, and the DP training function's mechanism."""

from __future__ import annotations

import json
import math
import multiprocessing
import threading

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import RdpAccountant

from fedsyft.privacy import (LedgerError, Mechanism, PrivacyGuard, PrivacyLedger, PrivatePlan, epsilon_spent,
                             noise_multiplier_for)
from fedsyft.privacy.guard import mechanism_of
from fedsyft.task import local_train_dp

DELTA = 1e-5


# ---- accountant: the numbers are dp-accounting's ----

@pytest.mark.parametrize("sigma, q, steps", [(1.1, 256 / 60000, 14000), (5.2256, 0.04, 1000), (1.0823, 0.04, 1000),
                                             (0.8, 0.01, 200)])
def test_epsilon_equals_dp_accountings_for_known_settings(sigma, q, steps):
    accountant = RdpAccountant()
    accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    assert epsilon_spent([Mechanism(sigma, q, steps)], DELTA) == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-9)


def test_one_gaussian_step_is_bounded_by_the_exact_gaussian_figure():
    # A cross-check by another route: RDP's ε for one unsampled Gaussian step is an upper bound on the
    # exact (ε, δ) of the Gaussian mechanism (Balle & Wang 2018), and not a loose one.
    for sigma in (1.0, 2.0, 5.0):
        exact = dp_accounting.get_epsilon_gaussian(sigma, DELTA)
        rdp = epsilon_spent([Mechanism(sigma, 1.0, 1)], DELTA)
        assert exact <= rdp <= 1.35 * exact


def test_composition_is_that_of_all_calls_together_and_tighter_than_adding():
    one = Mechanism(2.0, 0.04, 50)
    twenty = epsilon_spent([one] * 20, DELTA)
    assert twenty == pytest.approx(epsilon_spent([Mechanism(2.0, 0.04, 1000)], DELTA), rel=1e-9)
    assert twenty < 20 * epsilon_spent([one], DELTA) / 2  # far below naive addition


def test_noise_for_a_target_epsilon_meets_it_tightly():
    for target in (0.5, 1.0, 8.0):
        sigma = noise_multiplier_for(target, 0.04, 1000, DELTA)
        assert epsilon_spent([Mechanism(sigma, 0.04, 1000)], DELTA) <= target
        assert epsilon_spent([Mechanism(sigma * 0.99, 0.04, 1000)], DELTA) > target  # not wastefully large


def test_no_noise_is_infinite_epsilon_and_bad_settings_are_refused():
    assert epsilon_spent([Mechanism(0.0, 0.1, 1)], DELTA) == math.inf
    assert epsilon_spent([], DELTA) == 0.0
    for bad in [dict(noise_multiplier=-1, sample_rate=0.1, steps=1), dict(noise_multiplier=1, sample_rate=0, steps=1),
                dict(noise_multiplier=1, sample_rate=1.5, steps=1), dict(noise_multiplier=1, sample_rate=0.1, steps=0)]:
        with pytest.raises(ValueError):
            Mechanism(**bad)


def test_plan_derives_noise_for_the_whole_run():
    plan = PrivatePlan(epsilon=1.0, rounds=20)
    assert epsilon_spent([plan.mechanism] * 20, plan.delta) <= 1.0
    assert epsilon_spent([plan.mechanism] * 21, plan.delta) > 1.0
    assert set(plan.train_config()) == {"noise_multiplier", "sample_rate", "steps", "clip", "lr", "l2"}


# ---- ledger: durable, locked, fail-closed ----

ROWS = 1000  # the guard's public row count in these tests


def new_ledger(tmp_path, epsilon=1.0):
    ledger, _ = PrivacyLedger.open_or_create(tmp_path / "privacy_ledger.json", epsilon, DELTA, "mnist-shard", create=True)
    return ledger


def test_ledger_survives_reopening_and_keeps_charges(tmp_path):
    plan = PrivatePlan(epsilon=1.0, rounds=4)
    guard = PrivacyGuard(new_ledger(tmp_path), rows=ROWS)
    for _ in range(3):
        guard.admit(plan.train_config(), "r@x.org")
    reopened, what = PrivacyLedger.open_or_create(tmp_path / "privacy_ledger.json", None, None, "mnist-shard",
                                                  create=False)
    state = reopened.read()
    assert len(state.charges) == 3 and state.charges[0].requester == "r@x.org" and "budget kept" in what
    assert state.spent() == pytest.approx(epsilon_spent([plan.mechanism] * 3, DELTA))


def test_the_budget_is_enforced_and_the_refusal_names_what_remains(tmp_path):
    plan = PrivatePlan(epsilon=1.0, rounds=5)
    events = []
    guard = PrivacyGuard(new_ledger(tmp_path), rows=ROWS, record=lambda kind, f: events.append(kind))
    for _ in range(5):
        assert "privacy" in guard.run(plan.train_config(), lambda _: {"ok": True})
    refused = guard.run(plan.train_config(), lambda _: pytest.fail("ran past the budget"))
    assert "budget exhausted" in refused["error"] and "remaining" in refused["error"]
    assert guard.status()["calls"] == 5 and guard.status()["epsilon_spent"] <= 1.0
    assert events.count("privacy_debit") == 5 and events.count("privacy_refused") == 1


def test_a_call_that_crashes_after_its_charge_still_counts(tmp_path):
    plan = PrivatePlan(epsilon=1.0, rounds=10)
    ledger = new_ledger(tmp_path)

    def crash(config):
        raise MemoryError("the datasite died mid-call")

    with pytest.raises(MemoryError):
        PrivacyGuard(ledger, rows=ROWS).run(plan.train_config(), crash)
    reopened = PrivacyLedger(ledger.path).read()  # as a restarted datasite would read it
    assert len(reopened.charges) == 1 and reopened.spent() > 0


def test_plan_query_says_whether_a_run_fits(tmp_path):
    guard = PrivacyGuard(new_ledger(tmp_path, epsilon=1.5), rows=ROWS)
    plan = PrivatePlan(epsilon=1.0, rounds=10)
    assert guard.query(plan.plan_query(10))["privacy"]["plan_fits"]
    for _ in range(10):
        guard.admit(plan.train_config())
    answer = guard.query(plan.plan_query(30))["privacy"]  # 40 calls in all: over 1.5 (composition is sublinear)
    assert not answer["plan_fits"] and answer["plan_epsilon_total"] > 1.5
    assert guard.status()["calls"] == 10  # a question spends nothing


@pytest.mark.parametrize("config", [
    {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 5.5, "clip": 1, "lr": 1, "l2": 0},   # steps not an int
    {"noise_multiplier": "1", "sample_rate": 0.1, "steps": 5, "clip": 1, "lr": 1, "l2": 0},     # string
    {"noise_multiplier": True, "sample_rate": 0.1, "steps": 5, "clip": 1, "lr": 1, "l2": 0},    # bool
    {"noise_multiplier": float("nan"), "sample_rate": 0.1, "steps": 5, "clip": 1, "lr": 1, "l2": 0},
    {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 5, "clip": 1, "lr": 1},              # a key missing
    {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 5, "clip": 1, "lr": 1, "l2": 0, "seed": 3},  # extra
    "not a dict",
])
def test_a_config_the_function_could_read_differently_is_refused(tmp_path, config):
    guard = PrivacyGuard(new_ledger(tmp_path), rows=ROWS)
    answer = guard.run(config, lambda _: pytest.fail("ran a malformed private call"))
    assert "error" in answer and guard.status()["calls"] == 0


def test_no_noise_is_refused_by_any_finite_budget(tmp_path):
    guard = PrivacyGuard(new_ledger(tmp_path, epsilon=100.0), rows=ROWS)
    config = {"noise_multiplier": 0.0, "sample_rate": 1.0, "steps": 1, "clip": 1.0, "lr": 1.0, "l2": 0.0}
    assert "budget exhausted" in guard.run(config, lambda _: pytest.fail("ran without noise"))["error"]


def test_threads_cannot_overspend(tmp_path):
    plan = PrivatePlan(epsilon=1.0, rounds=10)
    guard = PrivacyGuard(new_ledger(tmp_path), rows=ROWS)
    admitted = []

    def call():
        out = guard.run(plan.train_config(), lambda _: {"ok": True})
        admitted.append("privacy" in out and "error" not in out)

    threads = [threading.Thread(target=call) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 10 and guard.status()["epsilon_spent"] <= 1.0


def _spend_in_another_process(path: str, config: dict, n: int, out) -> None:
    ledger = PrivacyLedger(path)
    out.put(sum("error" not in PrivacyGuard(ledger, rows=ROWS).run(config, lambda _: {"ok": True}) for _ in range(n)))


def test_processes_cannot_overspend(tmp_path):
    """Two processes (two datasite workers, say) share one ledger file: the file lock serialises them."""
    plan = PrivatePlan(epsilon=1.0, rounds=10)
    ledger = new_ledger(tmp_path)
    out = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(
        target=_spend_in_another_process, args=(str(ledger.path), plan.train_config(), 8, out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sum(out.get(timeout=5) for _ in procs) == 10
    assert len(ledger.read().charges) == 10 and ledger.read().spent() <= 1.0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "edit_spent", "delete"])
def test_a_damaged_ledger_refuses(tmp_path, damage):
    plan = PrivatePlan(epsilon=1.0, rounds=10)
    ledger = new_ledger(tmp_path)
    guard = PrivacyGuard(ledger, rows=ROWS)
    guard.admit(plan.train_config())
    text = ledger.path.read_text()
    if damage == "truncate":
        ledger.path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        ledger.path.write_bytes(b"\x00\xff" * 10)
    elif damage == "edit_spent":  # someone removes a charge by hand: the checksum no longer matches
        doc = json.loads(text)
        doc["charges"] = []
        ledger.path.write_text(json.dumps(doc))
    else:
        ledger.path.unlink()
    if damage == "delete":
        with pytest.raises(LedgerError, match="missing"):
            PrivacyLedger.open_or_create(ledger.path, 1.0, DELTA, "mnist-shard", create=False)
        return
    answer = guard.run(plan.train_config(), lambda _: pytest.fail("ran with a damaged ledger"))
    assert "corrupt" in answer["error"] or "cannot be read" in answer["error"]
    with pytest.raises(LedgerError):
        guard.status()


def test_the_owner_can_change_the_budget_but_not_the_spending(tmp_path):
    plan = PrivatePlan(epsilon=1.0, rounds=10)
    ledger = new_ledger(tmp_path)
    PrivacyGuard(ledger, rows=ROWS).admit(plan.train_config())
    spent = ledger.read().spent()
    again, what = PrivacyLedger.open_or_create(ledger.path, 5.0, None, "mnist-shard", create=False)
    assert "budget changed" in what and again.read().epsilon_budget == 5.0 and again.read().spent() == spent


# ---- the mechanism in local_train_dp ----

def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n)


def _config(**kw):
    return {"noise_multiplier": 0.0, "sample_rate": 1.0, "steps": 1, "clip": 1.0, "lr": 1.0, "l2": 0.0, **kw}


def _update(data, config, params=None, seed=1):
    config = {"rows": len(data[0]), **config}  # the public row count the guard fills in: here the exact one
    out = local_train_dp((*data, seed), params, config)
    assert "error" not in out, out
    start = params or {"coef": np.zeros((10, 784), np.float32), "intercept": np.zeros(10, np.float32)}
    return np.concatenate([(out["coef"] - start["coef"]).ravel(), out["intercept"] - start["intercept"]]), out


def test_clipping_bounds_each_rows_contribution_even_for_adversarial_rows():
    X, y = _data(200)
    X[0] = 255  # a row of all 255s: its unclipped gradient norm is about 28
    big = {"coef": np.full((10, 784), 0.5, np.float32), "intercept": np.array([50] + [0] * 9, np.float32)}
    for clip in (0.1, 1.0, 5.0):
        cfg = _config(clip=clip, rows=200)  # neighbours share the public row count
        with_row, _ = _update((X, y), cfg, big)
        without, _ = _update((X[1:], y[1:]), cfg, big)
        # Without noise and with q = 1 the step is -lr * sum(clipped gradients) / rows: one row moves it by <= clip/rows.
        diff = (with_row - without) * 200
        assert np.linalg.norm(diff) <= clip * 1.0001


def test_clipping_leaves_small_gradients_alone():
    X, y = _data(50)
    X[:] = 0  # gradients (p - y)(0, 1): norm <= sqrt(2)
    step, _ = _update((X, y), _config(clip=10.0))
    expected = np.zeros(10)
    for label in y:
        expected += np.full(10, 0.1) - np.eye(10)[label]
    # Each row's gradient sits on a grid of clip / 2**16 (rounding is within half a step per entry).
    assert np.allclose(step[-10:], -expected / 50, atol=10 / 2 ** 16)


def test_noise_has_the_stated_scale():
    """Each parameter's noise has std lr * sigma * clip / (q * n): within 2 % over 157,000 draws (SE 0.2 %)."""
    X, y = np.zeros((100, 784), np.uint8), np.zeros(100, np.int64)
    sigma, clip, q = 2.0, 0.5, 1.0
    draws = []
    for seed in range(20):
        step, _ = _update((X, y), _config(noise_multiplier=sigma, clip=clip, sample_rate=q), seed=seed)
        signal, _ = _update((X, y), _config(clip=clip, sample_rate=q), seed=seed)  # same seed: same draws, no noise
        draws.append(step - signal)
    draws = np.concatenate(draws)
    expected = sigma * clip / (q * 100)
    assert np.std(draws) == pytest.approx(expected, rel=0.02)
    assert abs(np.mean(draws)) < 5 * expected / np.sqrt(len(draws))


def test_randomness_is_the_sites_not_the_researchers():
    X, y = _data(300)
    cfg = _config(noise_multiplier=1.0, sample_rate=0.5, steps=3)
    a, _ = _update((X, y), cfg, seed=None)
    b, _ = _update((X, y), cfg, seed=None)
    assert not np.allclose(a, b)  # fresh OS entropy on every call when the site passes no seed
    c, _ = _update((X, y), cfg, seed=7)
    d, _ = _update((X, y), cfg, seed=7)
    assert np.array_equal(c, d)  # a simulated site's own seed repeats itself


def test_only_the_noised_parameters_and_the_public_count_leave():
    X, y = _data(100)
    _, out = _update((X, y), _config(noise_multiplier=1.0, sample_rate=0.5))
    assert set(out) == {"coef", "intercept", "n_train"} and out["n_train"] == 100


@pytest.mark.parametrize("bad", [dict(steps=0), dict(sample_rate=0.0), dict(sample_rate=1.5), dict(clip=0),
                                 dict(noise_multiplier=-1.0), dict(extra=1)])
def test_the_dp_function_refuses_out_of_range_configs(bad):
    out = local_train_dp(_data(20), None, _config(**bad))
    assert "error" in out and "coef" not in out


@pytest.mark.parametrize("center", [[0.5] * 783, [1.5] * 784, [-0.1] * 784, [float("nan")] * 784, "half", {"a": 1}])
def test_the_dp_function_refuses_a_centre_off_the_unit_box(center):
    out = local_train_dp(_data(20), None, _config(center=center, rows=20))
    assert out["error"].startswith("refused: center") and "coef" not in out


def test_a_centre_of_zeros_changes_nothing_and_any_centre_keeps_the_model_form():
    """The steps run on centred features; the answer is still logits = W x + b, and c = 0 is the plain function."""
    X, y = _data(300)
    cfg = _config(noise_multiplier=1.0, sample_rate=0.5, steps=3)
    plain, out = _update((X, y), cfg, seed=3)
    zeros, _ = _update((X, y), {**cfg, "center": [0.0] * 784}, seed=3)
    assert np.array_equal(plain, zeros)
    # One noiseless full-batch step from a model with coefficients: centring moves the intercept's
    # coordinates, so the step differs, but both answers predict with logits = W x + b and stay close.
    start = {"coef": out["coef"], "intercept": out["intercept"]}
    step = _config(lr=0.1)
    a, _ = _update((X, y), step, start)
    b, centred = _update((X, y), {**step, "center": list(X.mean(axis=0) / 255)}, start)
    assert not np.array_equal(a, b)
    assert np.abs(a - b).max() < 0.05 and np.isfinite(centred["intercept"]).all()


def test_mechanism_of_reads_what_the_function_executes():
    plan = PrivatePlan(epsilon=2.0, rounds=3)
    m = mechanism_of(plan.train_config())
    assert (m.noise_multiplier, m.sample_rate, m.steps) == (plan.noise_multiplier, plan.sample_rate, plan.steps)


def test_a_resumed_simulation_keeps_counting_the_epsilon_spent_before_it(mnist, tmp_path):
    # Simulated ledgers live in memory: the resumed run must recharge what the first part spent,
    # or it would report (and allow) more than the budget.
    from fedsyft.experiment import RunConfig, run_experiment
    from fedsyft.sites import LocalSite

    config = RunConfig(rounds=3, epsilon=1.0, sample_rate=1.0, dp_steps=5)  # q = 1: the accountant is quick
    test = mnist.test.subset(slice(0, 500))

    def sites():
        return [LocalSite(f"site {i}", mnist.train.subset(slice(i * 300, (i + 1) * 300)),
                          privacy=PrivacyGuard(PrivacyLedger.in_memory(1.0, 1e-5)), seed=(0, i)) for i in range(2)]

    class StopBeforeRound3:
        def round_started(self, round_no, rounds):
            if round_no == 3:
                raise KeyboardInterrupt

        def site_finished(self, *args):
            pass

        def round_finished(self, *args):
            pass

    straight = run_experiment(sites(), config, test, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(sites(), config, test, tmp_path / "resumed", observers=[StopBeforeRound3()])
    fresh = sites()
    resumed = run_experiment(fresh, config, test, tmp_path / "resumed", resume=True)
    spent = [[s.epsilon_spent for s in r.sites.values()] for r in resumed.history.rounds]
    assert spent == [[s.epsilon_spent for s in r.sites.values()] for r in straight.history.rounds]
    assert 0.999 < spent[2][0] <= 1.0 and spent[2][0] > spent[1][0] > spent[0][0]
    assert [site.privacy.status()["calls"] for site in fresh] == [3, 3]


def test_sampling_follows_the_smallest_sites_size_unless_chosen():
    from fedsyft.privacy.plan import sampling_for

    assert sampling_for(None) == sampling_for(30_000) == sampling_for(3_200) == (0.04, 50)  # MNIST's defaults
    assert sampling_for(300) == (pytest.approx(128 / 300), 5)  # ~128 rows a step, two passes a round
    assert sampling_for(1_000) == (0.128, 16)
    assert sampling_for(40) == (1.0, 5)
    assert sampling_for(300, sample_rate=0.04) == (0.04, 50) and sampling_for(300, steps=12)[1] == 12
    with pytest.raises(ValueError, match="rows must be at least 1"):
        sampling_for(0)


def test_a_private_run_sizes_its_sampling_by_the_sites_rows(mnist):
    from fedsyft.experiment import RunConfig, resolve_site_rows, run_experiment
    from fedsyft.privacy.plan import sampling_for
    from fedsyft.sites import LocalSite

    def sites(rows):
        return [LocalSite(f"site {i}", mnist.train.subset(slice(i * 1000, i * 1000 + n)),
                          privacy=PrivacyGuard(PrivacyLedger.in_memory(1.0, 1e-5)), seed=(0, i))
                for i, n in enumerate(rows)]

    result = run_experiment(sites([100, 500]), RunConfig(rounds=1, epsilon=1.0), None, None)
    recorded = result.history.config
    assert recorded["site_rows"] == 100 and recorded["sample_rate"] is None  # the smallest site's
    assert (recorded["privacy"]["sample_rate"], recorded["privacy"]["steps_per_round"]) == sampling_for(100) == (1.0, 5)
    chosen = RunConfig(rounds=1, epsilon=1.0, sample_rate=0.04, dp_steps=50)
    assert resolve_site_rows(sites([300]), chosen) is chosen  # the researcher's own choice stands
    assert resolve_site_rows(sites([300]), RunConfig(rounds=1)).site_rows is None  # not private: nothing to size

    class Silent(LocalSite):  # a datasite provisioned by an older fedsyft does not report its rows
        def privacy_query(self, query):
            answer = super().privacy_query(query)
            answer["privacy"].pop("rows", None)
            return answer

    silent = [Silent("old", mnist.train.subset(slice(0, 300)), privacy=PrivacyGuard(PrivacyLedger.in_memory(1.0, 1e-5)))]
    assert resolve_site_rows(silent, RunConfig(rounds=1, epsilon=1.0)).plan.sample_rate == 0.04


def test_a_ledger_of_the_earlier_relation_is_re_accounted_as_replace_one_and_says_so(tmp_path):
    """Format /1 answers carried the exact row count: its charges cost more now, and spent ε only goes up."""
    import hashlib

    from fedsyft.privacy.ledger import FORMAT, LEGACY_FORMAT

    charge = {"noise_multiplier": 5.0, "sample_rate": 0.04, "steps": 1000, "requester": "r@x.org",
              "time": "2026-11-26T09:00:00.000+00:00", "call": "c1"}
    body = {"format": LEGACY_FORMAT, "dataset": "mnist-shard", "created": "2026-11-26T08:00:00.000+00:00",
            "epsilon_budget": 10.0, "delta": DELTA, "charges": [charge]}
    path = tmp_path / "privacy_ledger.json"
    path.write_text(json.dumps({**body, "sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode())
                                .hexdigest()}))
    as_before = epsilon_spent([Mechanism(5.0, 0.04, 1000)], DELTA)
    ledger, what = PrivacyLedger.open_or_create(path, None, None, "mnist-shard", create=False)
    state = ledger.read()
    assert "1 charges of an earlier fedsyft" in what and "re-accounted as replace-one" in what
    assert state.spent() > as_before and state.charges[0].relation == "replace-one"
    assert json.loads(path.read_text())["format"] == FORMAT  # rewritten once, in the current format
    _, again = PrivacyLedger.open_or_create(path, None, None, "mnist-shard", create=False)
    assert "earlier fedsyft" not in again and PrivacyLedger(path).read().spent() == state.spent()
