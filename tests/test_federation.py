"""The federation loop and the run directory, with in-process sites (no servers)."""

import json
import threading
import time

import numpy as np
import pytest

from fedsyft.experiment import RunConfig, run_experiment
from fedsyft.federation import FederationError, federate
from fedsyft.history import GlobalEval, History, SiteRound
from fedsyft.run_dir import load_model
from fedsyft.sites import LocalSite, SiteError, SiteResult


class FakeSite:
    """Returns constant parameters; records how it was called."""

    def __init__(self, name, value, n, delay=0.0, fail_on_round=None):
        self.name, self.value, self.n, self.delay, self.fail_on_round = name, value, n, delay, fail_on_round
        self.calls, self.threads = [], set()

    def train(self, global_params, config):
        self.calls.append(global_params)
        self.threads.add(threading.get_ident())
        if self.fail_on_round == len(self.calls):
            raise SiteError(self.name, "went away")
        time.sleep(self.delay)
        params = {"coef": np.full((10, 784), self.value, np.float32), "intercept": np.zeros(10, np.float32)}
        report = SiteRound(n_train=self.n, train_accuracy=0.5, test_accuracy=0.5, train_loss=1.0, test_loss=1.0,
                           confusion_matrix=None, seconds=self.delay, bytes_sent=0, bytes_received=0)
        return SiteResult(params, report)


def _evaluate(params):
    return GlobalEval(test_accuracy=float(params["coef"].mean()), test_loss=0.0, confusion_matrix=[[0]])


def test_sites_run_in_parallel_and_results_are_weighted():
    a, b = FakeSite("a", 1.0, 100, delay=0.5), FakeSite("b", 3.0, 300, delay=0.5)
    start = time.perf_counter()
    result = federate([a, b], 2, {}, _evaluate, history=History({}))
    assert time.perf_counter() - start < 1.8  # 2 rounds of two 0.5 s sites, in parallel
    assert np.allclose(result.params["coef"], 2.5)
    assert a.calls[0] is None and np.allclose(a.calls[1]["coef"], 2.5)  # round 2 gets the global model
    assert [r.round for r in result.history.rounds] == [1, 2]
    assert list(result.history.rounds[0].sites) == ["a", "b"]


def test_a_failing_site_stops_the_run_but_keeps_finished_rounds():
    history = History({})
    with pytest.raises(FederationError, match="round 2 failed .* b: went away"):
        federate([FakeSite("a", 1, 10), FakeSite("b", 1, 10, fail_on_round=2)], 3, {}, _evaluate, history=history)
    assert len(history.rounds) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 1"):
        federate([FakeSite("a", 1, 1)], 0, {}, _evaluate, history=History({}))
    with pytest.raises(ValueError, match="unique"):
        federate([FakeSite("a", 1, 1), FakeSite("a", 1, 1)], 1, {}, _evaluate, history=History({}))
    with pytest.raises(ValueError, match="rounds"):
        RunConfig(rounds=-1)


def test_simulated_run_learns_and_writes_the_run_directory(small_shards, mnist, tmp_path):
    sites = [LocalSite(f"MNIST Part {i + 1}", s) for i, s in enumerate(small_shards)]
    result = run_experiment(sites, RunConfig(rounds=2), mnist.test, tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    # the schema other tools rely on (DESIGN.md)
    assert set(doc) >= {"config", "rounds", "final"}
    r1 = doc["rounds"][0]
    assert set(r1) >= {"round", "seconds", "global", "sites"}
    assert set(r1["global"]) >= {"test_accuracy", "test_loss", "confusion_matrix"}
    site = r1["sites"]["MNIST Part 1"]
    assert set(site) >= {"n_train", "train_accuracy", "test_accuracy", "confusion_matrix", "bytes_sent", "bytes_received"}
    assert site["n_train"] == 2700
    assert np.asarray(r1["global"]["confusion_matrix"]).sum() == 10000
    # parameters only: 10x784 + 10 float32 = 31,400 bytes, plus a small JSON of metrics
    assert 31400 < site["bytes_received"] < 33000
    assert doc["rounds"][1]["sites"]["MNIST Part 1"]["bytes_sent"] > 31400
    final = doc["final"]["global_test_accuracy"]
    assert final == result.history.final_accuracy and final > 0.87
    assert doc["rounds"][1]["global"]["test_accuracy"] >= doc["rounds"][0]["global"]["test_accuracy"] - 0.005
    model = load_model(tmp_path)
    assert np.array_equal(model["coef"], result.params["coef"])
    assert json.loads((tmp_path / "config.json").read_text())["rounds"] == 2
    for png in ("accuracy.png", "confusion_matrices.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert History.load(tmp_path).to_dict()["rounds"][0]["sites"]["MNIST Part 2"]["n_train"] == 2700
