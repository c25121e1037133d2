"""Strategies, client sampling and the simulation engine: pure logic with fake and in-process sites."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
from test_federation import FakeSite, _evaluate

from fedsyft.aggregate import fedavg
from fedsyft.experiment import RunConfig, run_experiment
from fedsyft.federation import federate
from fedsyft.history import History, SiteRound
from fedsyft.sites import LocalSite, SiteResult
from fedsyft.sites.simulation import engine_for
from fedsyft.strategies import STRATEGIES, FedAdam, FedAvg, FedAvgM, FedProx, FedYogi, Scaffold, make_strategy


def _params(value, intercept=0.0):
    return {"coef": np.full((10, 784), value, np.float32), "intercept": np.full(10, intercept, np.float32)}


def _result(value, n=100, extra=None):
    report = SiteRound(n_train=n, train_accuracy=None, test_accuracy=None, train_loss=None, test_loss=None,
                       confusion_matrix=None, seconds=0.0, bytes_sent=0, bytes_received=0)
    return SiteResult(_params(value), report, extra or {})


SITES = [f"s{i}" for i in range(20)]


def test_sampling_is_seeded_per_round_without_replacement_and_in_site_order():
    s = FedAvg(clients_per_round=5, seed=3)
    a, b = s.sample(1, SITES), s.sample(2, SITES)
    assert len(a) == len(set(a)) == 5 and set(a) <= set(SITES) and a != b
    assert a == FedAvg(clients_per_round=5, seed=3).sample(1, SITES)  # a resumed run samples the same
    assert a != FedAvg(clients_per_round=5, seed=4).sample(1, SITES)
    assert a == sorted(a, key=SITES.index)
    assert FedAvg().sample(1, SITES) == SITES and FedAvg(clients_per_round=50).sample(1, SITES) == SITES
    counts = np.zeros(20)
    for r in range(1, 401):
        counts[[SITES.index(n) for n in s.sample(r, SITES)]] += 1
    assert counts.min() > 60 and counts.max() < 140  # uniform: 100 expected per site


def test_clients_per_round_is_a_count_or_a_fraction_of_the_sites():
    from fedsyft.strategies.base import count_or_fraction

    assert count_or_fraction(None) is None and count_or_fraction(0.1) == 0.1
    assert count_or_fraction(10.0) == 10 and isinstance(count_or_fraction(10.0), int)
    for bad in (0, -1, 1.5, 2.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="count of sites .* or a fraction"):
            FedAvg(clients_per_round=bad)
    assert len(FedAvg(clients_per_round=0.25).sample(1, SITES)) == 5  # of 20
    assert len(FedAvg(clients_per_round=0.001).sample(1, SITES)) == 1  # at least one
    hundred = [f"s{i}" for i in range(100)]
    assert len(FedAvg(clients_per_round=0.29).sample(1, hundred)) == 29  # not 28 from 0.29 * 100 = 28.999...
    assert FedAvg(clients_per_round=0.25, seed=3).sample(7, SITES) == FedAvg(clients_per_round=5, seed=3).sample(7, SITES)


def test_the_loop_calls_only_sampled_sites_and_records_them():
    sites = [FakeSite(f"s{i}", float(i), 100) for i in range(6)]
    result = federate(sites, 3, {}, _evaluate, history=History({}), strategy=FedAvg(clients_per_round=2, seed=1))
    for record in result.history.rounds:
        assert len(record.sampled) == 2 and list(record.sites) == record.sampled
    called = sum(len(s.calls) for s in sites)
    assert called == 6
    assert "sampled" in result.history.to_dict()["rounds"][0]
    with pytest.raises(ValueError, match="min_sites"):
        federate(sites, 1, {}, _evaluate, history=History({}), strategy=FedAvg(clients_per_round=2), min_sites=3)


def test_fedavg_and_fedprox_aggregate_as_fedavg_and_fedprox_sends_mu():
    results = {"a": _result(1.0, 100), "b": _result(4.0, 300)}
    expected = fedavg([(r.params, r.n_train) for r in results.values()])
    for strategy in (FedAvg(), FedProx(mu=0.5)):
        assert np.allclose(strategy.aggregate_fit(1, None, results)["coef"], expected["coef"])
    plan = FedProx(mu=0.5).configure_fit(1, None, ["a", "b"], {"l2": 1e-5})
    assert plan["a"].config == {"l2": 1e-5, "mu": 0.5}
    assert np.allclose(FedAvg(weighted=False).aggregate_fit(1, None, results)["coef"], 2.5)


def test_fedavgm_accumulates_momentum_on_the_pseudo_gradient():
    m = FedAvgM(server_lr=1.0, server_momentum=0.5)
    x0 = _params(0.0)
    x1 = m.aggregate_fit(1, x0, {"a": _result(1.0)})           # delta 1, v = 1
    assert np.allclose(x1["coef"], 1.0)
    x2 = m.aggregate_fit(2, x1, {"a": _result(1.0)})           # delta 0, v = 0.5
    assert np.allclose(x2["coef"], 1.5)
    plain = FedAvgM(server_lr=1.0, server_momentum=0.0)
    assert np.allclose(plain.aggregate_fit(1, x0, {"a": _result(2.0)})["coef"], 2.0)  # = FedAvg


def test_fedadam_and_fedyogi_take_the_papers_first_step():
    lr, b1, b2, tau, d = 0.1, 0.9, 0.99, 1e-3, 0.2
    m, v_adam = (1 - b1) * d, b2 * tau ** 2 + (1 - b2) * d ** 2
    v_yogi = tau ** 2 - (1 - b2) * d ** 2 * np.sign(tau ** 2 - d ** 2)
    for strategy, v in ((FedAdam(server_lr=lr, beta1=b1, beta2=b2, tau=tau), v_adam),
                        (FedYogi(server_lr=lr, beta1=b1, beta2=b2, tau=tau), v_yogi)):
        out = strategy.aggregate_fit(1, _params(0.0), {"a": _result(d)})
        assert np.allclose(out["coef"], lr * m / (np.sqrt(v) + tau), rtol=1e-5)


def test_with_a_public_centre_the_server_optimizers_step_on_the_centred_intercept():
    """The sites fit W (x - c) + (b + W c): FedAdam's step on the intercept is taken on b + W c, and the answer
    is back in the model's (W, b); FedAvgM's step is linear, the same in either coordinates."""
    c = np.linspace(0, 1, 784)
    config = {"center": c.tolist()}
    lr, b1, b2, tau, d = 0.1, 0.9, 0.99, 1e-3, 0.2
    site = _result(d, extra=None)
    site.params["intercept"] = (-site.params["coef"].astype(np.float64) @ c).astype(np.float32)  # b + W c = 0
    adam = FedAdam(server_lr=lr, beta1=b1, beta2=b2, tau=tau)
    adam.configure_fit(1, None, ["a"], config)
    out = adam.aggregate_fit(1, _params(0.0), {"a": site})
    coef = lr * (1 - b1) * d / (np.sqrt(b2 * tau ** 2 + (1 - b2) * d ** 2) + tau)
    assert np.allclose(out["coef"], coef, rtol=1e-5)
    # centred: the intercept's pseudo-gradient is 0, it stays 0 there; back in (W, b): b = -W c
    assert np.allclose(out["intercept"], -coef * c.sum(), rtol=1e-5)
    uncentred = FedAdam(server_lr=lr, beta1=b1, beta2=b2, tau=tau).aggregate_fit(1, _params(0.0), {"a": site})
    assert not np.allclose(uncentred["intercept"], out["intercept"], rtol=1e-2)  # there it moves by lr at most
    momentum = [FedAvgM(server_lr=1.0, server_momentum=0.5) for _ in range(2)]
    momentum[0].configure_fit(1, None, ["a"], config)
    x = [m.aggregate_fit(1, _params(0.0), {"a": site}) for m in momentum]
    assert all(np.allclose(x[0][k], x[1][k], rtol=1e-5, atol=1e-5) for k in x[0])


def test_scaffold_sends_c_minus_ci_and_updates_control_variates_option_one():
    s = Scaffold(server_lr=1.0)
    x = _params(0.0)
    plan = s.configure_fit(1, x, ["a", "b", "c", "d"], {"l2": 1e-5})
    assert np.allclose(plan["a"].config["correction"]["coef"], 0.0)  # c = c_i = 0 at first
    results = {"a": _result(1.0, extra={"control_variate": _params(0.4)}),
               "b": _result(3.0, extra={"control_variate": _params(0.8)})}
    new = s.aggregate_fit(1, x, results)
    assert np.allclose(new["coef"], 2.0)  # x + mean(y_i - x), uniform as in the paper
    assert np.allclose(s.c["coef"], (0.4 + 0.8) / 4)  # c += sum(c_i+ - c_i) / N, N = 4 sites
    plan = s.configure_fit(2, new, ["a", "b", "c", "d"], {"l2": 1e-5})
    assert np.allclose(plan["a"].config["correction"]["coef"], 0.3 - 0.4)
    assert np.allclose(plan["c"].config["correction"]["coef"], 0.3)  # c - 0 for a site not yet heard from


def test_scaffold_option_two_for_private_sites_is_computed_from_the_released_model():
    s = Scaffold()
    x = _params(1.0)
    s.configure_fit(1, x, ["a", "b"], {"steps": 10, "lr": 0.5, "noise_multiplier": 1.0})
    s.aggregate_fit(1, x, {"a": _result(0.0)})  # no control_variate: option II
    # c_a+ = c_a - c + (x - y_a) / (K lr) = 0 - 0 + (1 - 0) / 5
    assert np.allclose(s.c_sites["a"]["coef"], 0.2) and np.allclose(s.c["coef"], 0.1)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_state_round_trips_so_a_resumed_run_continues_exactly(name):
    a, b = make_strategy(name, ema=0.5), make_strategy(name, ema=0.5)
    x = _params(0.0)
    sites = ["a", "b"]
    results = {"a": _result(1.0, extra={"control_variate": _params(0.1)}), "b": _result(2.0, 200,
                                                                                      extra={"control_variate": _params(0.2)})}
    for strategy in (a, b):
        strategy.configure_fit(1, x, sites, {})
        x1 = strategy.aggregate_fit(1, x, results)
        strategy.round_model(1, x1)
    b2 = make_strategy(name, ema=0.5)
    b2.load_state_dict(copy.deepcopy(b.state_dict()))
    later = {"a": _result(3.0, extra={"control_variate": _params(0.3)}), "b": _result(5.0, 200,
                                                                                    extra={"control_variate": _params(0.4)})}
    for strategy in (a, b2):
        plan = strategy.configure_fit(2, x1, sites, {})
        out = strategy.aggregate_fit(2, x1, later)
        strategy.out, strategy.plan, strategy.model = out, plan, strategy.round_model(2, out)
    assert np.array_equal(a.out["coef"], b2.out["coef"])
    assert np.array_equal(a.model["coef"], b2.model["coef"])  # the moving average is checkpointed too
    assert all(set(a.plan[n].config) == set(b2.plan[n].config) for n in sites)


def test_ema_averages_the_aggregates_once_per_round():
    s = FedAvg(ema=0.9)
    assert np.allclose(s.round_model(1, _params(1.0))["coef"], 1.0)  # starts from the first aggregate
    assert np.allclose(s.round_model(2, _params(11.0))["coef"], 2.0)  # 0.9 * 1 + 0.1 * 11
    assert np.allclose(s.round_model(2, _params(11.0))["coef"], 2.0)  # asked again: the same round's average
    assert np.allclose(s.round_model(3, _params(2.0))["coef"], 2.0)
    off = FedAvg()
    p = _params(3.0)
    assert off.round_model(1, p) is p and off.state_dict() == {} and "ema" not in off.describe()
    assert FedAvg(ema=0.9).describe()["ema"] == 0.9
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema must be"):
            FedAvg(ema=bad)


def test_with_ema_the_run_reports_the_average_and_the_sites_get_the_aggregate():
    class Rising(FakeSite):  # answers 1, 2, 3, ...: the aggregate moves every round
        def train(self, global_params, config):
            self.value = len(self.calls) + 1.0
            return super().train(global_params, config)

    site = Rising("a", 0.0, 100)
    result = federate([site], 3, {}, _evaluate, history=History({}), strategy=FedAvg(ema=0.5))
    # aggregates 1, 2, 3; averages 1, 1.5, 2.25; _evaluate reports the mean coefficient
    assert [r.global_.test_accuracy for r in result.history.rounds] == [1.0, 1.5, 2.25]
    assert np.allclose(result.params["coef"], 2.25) and np.allclose(result.aggregate["coef"], 3.0)
    assert site.calls[0] is None and np.allclose(site.calls[2]["coef"], 2.0)  # round 3 starts from the aggregate


def test_make_strategy_names_a_bad_choice():
    with pytest.raises(ValueError, match="unknown strategy 'fedsgd'"):
        make_strategy("fedsgd")
    with pytest.raises(ValueError, match="fedavg does not take mu"):
        make_strategy("fedavg", mu=0.1)
    with pytest.raises(ValueError, match="server_lr must be positive"):
        make_strategy("fedadam", server_lr=0.0)
    assert make_strategy("fedprox", mu=None).mu == 0.01  # None: the default


@pytest.fixture(scope="module")
def small_sites(mnist):
    return [LocalSite(f"site {i}", mnist.train.subset(slice(i * 400, (i + 1) * 400)), seed=(0, i)) for i in range(6)]


@pytest.mark.parametrize("config", [RunConfig(rounds=2, local_iters=5, strategy="scaffold", clients_per_round=4),
                                    RunConfig(rounds=2, epsilon=2.0, strategy="fedprox", mu=0.1)],
                         ids=["scaffold", "private-fedprox"])
def test_the_process_engine_gives_the_numbers_of_one_at_a_time_execution(small_sites, mnist, config):
    test = mnist.test.subset(slice(0, 1000))

    def fresh():
        from fedsyft.privacy import PrivacyGuard, PrivacyLedger

        guard = (lambda: PrivacyGuard(PrivacyLedger.in_memory(2.0, 1e-5))) if config.private else (lambda: None)
        return [LocalSite(s.name, s.data, privacy=guard(), seed=(0, i)) for i, s in enumerate(small_sites)]

    one_at_a_time = run_experiment(fresh(), config, test, None, max_workers=1)
    sites = fresh()
    with engine_for(sites, 2):  # two calls in flight per worker, as simulate runs it
        pooled = run_experiment(sites, config, test, None, max_workers=4)
    assert np.array_equal(one_at_a_time.params["coef"], pooled.params["coef"])
    assert [r.sampled for r in one_at_a_time.history.rounds] == [r.sampled for r in pooled.history.rounds]


def test_a_simulated_site_is_not_charged_for_waiting_for_a_free_worker(mnist):
    # One worker, three calls in flight: the second and third wait a whole fit or two in the
    # queue. That wait is the simulation's; the site's seconds are the call's own.
    sites = [LocalSite(f"site {i}", mnist.train.subset(slice(i * 3000, (i + 1) * 3000))) for i in range(3)]
    with engine_for(sites, 1):
        result = run_experiment(sites, RunConfig(rounds=1), mnist.test.subset(slice(0, 100)), None, max_workers=3)
    reports = list(result.history.rounds[0].sites.values())
    fit = min(r.compute_seconds for r in reports)
    assert fit > 0.02  # a fit long enough that a wait for one would show
    assert all(r.compute_seconds <= r.seconds < r.compute_seconds + fit / 2 for r in reports), \
        [(r.seconds, r.compute_seconds) for r in reports]


def test_engine_workers_hold_every_blas_library_at_one_thread(small_sites):
    # scipy's own OpenBLAS loads with scipy.optimize, after a limit set at the worker's start would
    # have been applied; left at two threads it made each small L-BFGS-B fit about 3x slower.
    from threadpoolctl import threadpool_info

    from fedsyft.task import DEFAULT_TRAIN_CONFIG

    site = LocalSite("one", small_sites[0].data)
    with engine_for([site], 1) as engine:
        site.train(None, {**DEFAULT_TRAIN_CONFIG, "local_iters": 1})
        libraries = engine._pool.submit(threadpool_info).result()
    assert any("scipy" in lib["filepath"] for lib in libraries)
    assert {lib["filepath"]: lib["num_threads"] for lib in libraries} == {lib["filepath"]: 1 for lib in libraries}


def test_a_resumed_strategy_run_ends_where_an_uninterrupted_one_does(small_sites, mnist, tmp_path):
    from fedsyft.run_dir import load_checkpoint, load_model

    test = mnist.test.subset(slice(0, 1000))

    def config(rounds):
        return RunConfig(rounds=rounds, local_iters=5, strategy="fedadam", clients_per_round=3, ema=0.8)

    straight = run_experiment(small_sites, config(3), test, tmp_path / "a")
    run_experiment(small_sites, config(2), test, tmp_path / "b")
    resumed = run_experiment(small_sites, config(3), test, tmp_path / "b", resume=True)
    assert np.array_equal(straight.params["coef"], resumed.params["coef"])
    assert np.array_equal(straight.aggregate["coef"], resumed.aggregate["coef"])
    # model.npz holds the moving average; the checkpoint the aggregate the sites continue from
    assert np.array_equal(load_model(tmp_path / "b")["coef"], resumed.params["coef"])
    assert np.array_equal(load_checkpoint(tmp_path / "b")[1]["coef"], resumed.aggregate["coef"])
    assert not np.array_equal(resumed.params["coef"], resumed.aggregate["coef"])


# -- the structure: an abstract Strategy, FedAvg the concrete default, options declared once --

def test_strategy_is_abstract_and_fedavg_is_the_default():
    from fedsyft.strategies import Strategy

    with pytest.raises(TypeError, match="abstract"):
        Strategy()
    assert all(issubclass(cls, Strategy) for cls in STRATEGIES.values())
    assert type(RunConfig().make_strategy()) is FedAvg
    with pytest.raises(TypeError, match="strategy must be"):
        federate([FakeSite("a", 1.0, 1)], 1, {}, _evaluate, history=History({}), strategy=None)


def test_each_strategy_takes_exactly_its_declared_options():
    import dataclasses
    import inspect

    from fedsyft.strategies.options import OPTIONS, STRATEGY, options_for

    for name, cls in STRATEGIES.items():
        keywords = set()
        for klass in cls.__mro__[:-1]:  # the constructors' own keywords, down the chain of **kwargs (not object's)
            if "__init__" in vars(klass):
                keywords |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                             if p.kind is not p.VAR_KEYWORD and p.name != "self"}
        assert keywords - {"seed"} == {o.name for o in options_for(name, STRATEGY)}, name
        for o in options_for(name):  # every default is in its own range
            assert all(o.validate(o.default_for(name, sampled)) == o.default_for(name, sampled) for sampled in (0, 1))
    assert {o.name for o in OPTIONS} <= {f.name for f in dataclasses.fields(RunConfig)}
    assert all(set(o.strategies or ()) <= set(STRATEGIES) for o in OPTIONS)

    class Median(FedAvg):  # a strategy of one's own takes the options every strategy takes
        name, title = "median", "Median"

        def aggregate_fit(self, round_no, params, results):
            return {k: np.median([r.params[k] for r in results.values()], axis=0) for k in ("coef", "intercept")}

    assert Median(ema=0.5).describe() == {"strategy": "median", "clients_per_round": None, "weighted": True, "ema": 0.5}
    result = federate([FakeSite(n, v, 1) for n, v in (("a", 1.0), ("b", 2.0), ("c", 9.0))], 1, {}, _evaluate,
                      history=History({}), strategy=Median())
    assert np.allclose(result.params["coef"], 2.0)


@pytest.mark.parametrize("strategy, name, bad, message", [
    ("fedadam", "server_lr", 0.0, "server_lr must be positive, got 0.0"),
    ("scaffold", "server_lr", float("inf"), "server_lr must be positive"),
    ("fedprox", "mu", -1, "mu must be between 0 and 1000, got -1"),
    ("fedyogi", "beta2", 1.0, "beta2 must be at least 0 and below 1, got 1.0"),
    ("fedavgm", "server_momentum", float("nan"), "server_momentum must be at least 0 and below 1"),
    ("fedadam", "tau", 0, "tau must be positive"),
    ("fedavg", "local_iters", 0, "local_iters must be between 1 and 1000, got 0"),
    ("fedavg", "local_iters", 2.5, "local_iters must be a whole number"),
])
def test_an_option_out_of_range_is_named_as_the_parameter(strategy, name, bad, message):
    from fedsyft.errors import ParameterError

    with pytest.raises(ParameterError, match=message.replace("(", r"\(")) as caught:
        RunConfig(strategy=strategy, **{name: bad})
    assert caught.value.parameters == (name,) and "--" not in str(caught.value)


def test_defaults_depend_on_the_strategy_and_fedavg_keeps_its_own():
    from fedsyft.strategies.options import option

    iters = {name: RunConfig(strategy=name).train_config()["local_iters"] for name in STRATEGIES}
    assert iters == {"fedavg": 25, "fedprox": 25, "scaffold": option("local_iters").default["scaffold"],
                     "fedavgm": 2, "fedadam": 2, "fedyogi": 2}
    plain = RunConfig()
    assert plain.to_dict()["local_iters"] == 25 and plain.to_dict()["weighted"] is True  # recorded as always
    assert plain.make_strategy().describe() == {"strategy": "fedavg", "clients_per_round": None, "weighted": True}
    assert RunConfig(strategy="fedadam", local_iters=7).train_config()["local_iters"] == 7  # given: kept
    assert make_strategy("fedadam").server_lr == 0.03 and make_strategy("fedavgm").server_lr == 1.0
    assert RunConfig(strategy="fedadam").setting("mu") is None  # not an option of FedAdam


def test_with_sampled_sites_the_defaults_smooth_and_take_a_plain_mean_but_fedavg_stays_plain():
    sampled = RunConfig(strategy="fedadam", clients_per_round=10)
    assert sampled.make_strategy().label == "FedAdam + EMA 0.95" and sampled.make_strategy().weighted is False
    assert sampled.to_dict()["weighted"] is False and sampled.setting("ema") == 0.95
    assert RunConfig(strategy="fedadam", clients_per_round=10, ema=0, weighted=True).make_strategy().describe() == {
        "strategy": "fedadam", "clients_per_round": 10, "weighted": True, "server_lr": 0.03, "beta1": 0.9,
        "beta2": 0.99, "tau": 0.001}  # given: kept, 0 included
    plain = FedAvg(clients_per_round=0.1)
    assert (plain.weighted, plain.ema) == (True, 0.0)
    assert make_strategy("scaffold", clients_per_round=5).weighted is True  # its step is a plain mean anyway


def test_a_run_recorded_under_older_defaults_resumes_with_them():
    recorded = RunConfig(strategy="fedadam", server_lr=0.01, local_iters=25).to_dict()
    stored = {**recorded, "server_lr": None}  # given as a default then: the default was 0.01
    again = RunConfig.from_dict(stored)
    assert again.make_strategy().describe() == recorded["strategy_settings"]
    assert again.train_config() == RunConfig.from_dict(recorded).train_config()
    # a sampled run recorded before sampling smoothed by default: its strategy_settings leave ema out (off)
    recorded = RunConfig(strategy="scaffold", clients_per_round=4, ema=0, server_lr=1.0, local_iters=25).to_dict()
    assert "ema" not in recorded["strategy_settings"]
    stored = {**recorded, "ema": None, "server_lr": None}
    assert RunConfig.from_dict(stored).make_strategy().describe() == recorded["strategy_settings"]


def test_fedavgs_local_iters_follow_the_sites_a_round_and_a_given_value_wins():
    # the original project's 25 with up to 3 sites a round (fedsyft demo: 2), 5 with more (issue 17)
    assert [RunConfig(site_count=n).setting("local_iters") for n in (1, 2, 3, 4, 10, 100)] == [25, 25, 25, 5, 5, 5]
    assert RunConfig(site_count=2).train_config()["local_iters"] == 25
    assert RunConfig(site_count=10).train_config()["local_iters"] == 5
    assert RunConfig().setting("local_iters") == 25  # the sites not known yet
    # sites a round: clients_per_round of them when it samples, a fraction as the sampling counts it
    assert RunConfig(site_count=1000, clients_per_round=10).setting("local_iters") == 5
    assert RunConfig(site_count=1000, clients_per_round=3).setting("local_iters") == 25
    assert RunConfig(site_count=100, clients_per_round=0.03).setting("local_iters") == 25  # 3 of 100
    assert RunConfig(site_count=100, clients_per_round=0.04).setting("local_iters") == 5   # 4 of 100
    assert RunConfig(site_count=2, clients_per_round=10).setting("local_iters") == 25      # both, every round
    assert (RunConfig(site_count=100, clients_per_round=0.04).sites_per_round, RunConfig().sites_per_round) == (4, None)
    # given: kept, either way
    assert RunConfig(site_count=10, local_iters=25).train_config()["local_iters"] == 25
    assert RunConfig(site_count=2, local_iters=5).train_config()["local_iters"] == 5
    # the other strategies' defaults do not depend on it
    others = [name for name in STRATEGIES if name != "fedavg"]
    assert [RunConfig(strategy=name, site_count=10).setting("local_iters") for name in others] == [
        RunConfig(strategy=name, site_count=2).setting("local_iters") for name in others]
    recorded = RunConfig(site_count=10).to_dict()
    assert (recorded["local_iters"], recorded["site_count"]) == (5, 10)  # recorded as in effect
    with pytest.raises(ValueError, match="site_count"):
        RunConfig(site_count=0)


def test_a_run_counts_its_sites_and_resumes_with_the_local_iters_it_recorded():
    class Recording(FakeSite):
        def train(self, global_params, config):
            self.iters = config["local_iters"]
            return super().train(global_params, config)

    for n, iters in ((2, 25), (10, 5)):
        sites = [Recording(f"s{i}", 1.0, 100) for i in range(n)]
        result = run_experiment(sites, RunConfig(rounds=1), None, None)
        assert {s.iters for s in sites} == {iters}
        assert (result.history.config["local_iters"], result.history.config["site_count"]) == (iters, n)
    # a 10-site run recorded before the default followed the sites (25, no site_count) resumes with its 25
    old = {k: v for k, v in RunConfig(local_iters=25).to_dict().items() if k != "site_count"}
    again = RunConfig.from_dict(old)
    assert replace(again, site_count=10).train_config()["local_iters"] == 25
    assert RunConfig.from_dict(RunConfig(site_count=10).to_dict()).train_config()["local_iters"] == 5


def test_typer_options_come_from_the_declarations():
    import click

    from fedsyft.strategies import typer_option

    lr = typer_option("server_lr")
    assert lr.default is None and lr.param_decls == ("--server-lr",) and "fedadam, fedyogi: 0.03" in lr.help
    assert isinstance(lr.click_type, click.FloatRange) and lr.click_type.min_open
    assert typer_option("weighted").param_decls == ("--weighted/--unweighted",)
    assert ("fedavg: 25 with up to 3 sites a round (all, or clients_per_round), else 5; fedprox: 25;"
            in typer_option("local_iters").help)


# -- state: nested, flattened to the checkpoint's keys of before --

def _one_round(name, sites=("a", "b|c")):
    s = make_strategy(name, ema=0.5)
    x = _params(0.0)
    s.configure_fit(1, x, list(sites), {})
    results = {n: _result(1.0 + i, 100 * (i + 1), extra={"control_variate": _params(0.1 * (i + 1))})
               for i, n in enumerate(sites)}
    s.round_model(1, s.aggregate_fit(1, x, results))
    return s


LEGACY_KEYS = {  # what checkpoints held before the state was nested (params coef and intercept)
    "fedavg": set(), "fedprox": set(),
    "scaffold": {"c|{p}", "ci|a|{p}", "ci|b|c|{p}"},
    "fedavgm": {"momentum.{p}"},
    "fedadam": {"m.{p}", "v.{p}"}, "fedyogi": {"m.{p}", "v.{p}"},
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_the_checkpoint_keeps_its_keys_and_older_checkpoints_load(name, tmp_path):
    from fedsyft.run_dir import CHECKPOINT_FILE, STRATEGY_PREFIX, flatten_state, load_checkpoint

    s = _one_round(name)
    flat = flatten_state(s.state_dict())
    expected = {"ema|round"} | {k.format(p=p) for k in {"ema|{p}", *LEGACY_KEYS[name]} for p in ("coef", "intercept")}
    assert set(flat) == {STRATEGY_PREFIX + k for k in expected}
    # A checkpoint as an earlier fedsyft wrote it loads into a strategy that continues exactly.
    np.savez(tmp_path / CHECKPOINT_FILE, coef=_params(1.0)["coef"], intercept=_params(1.0)["intercept"],
             history=np.frombuffer(History({}).to_json().encode(), np.uint8), **flat)
    restored = make_strategy(name, ema=0.5)
    restored.load_state_dict(load_checkpoint(tmp_path)[2])
    later = {n: _result(3.0 + i, extra={"control_variate": _params(0.3)}) for i, n in enumerate(("a", "b|c"))}
    outs = []
    for strategy in (s, restored):
        strategy.configure_fit(2, _params(1.0), ["a", "b|c"], {})
        outs.append(strategy.round_model(2, strategy.aggregate_fit(2, _params(1.0), later)))
    assert np.array_equal(outs[0]["coef"], outs[1]["coef"])
