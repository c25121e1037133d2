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
from fedsyft.strategies import FedAvg


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
    result = federate([a, b], 2, {}, _evaluate, history=History({}), strategy=FedAvg())
    assert time.perf_counter() - start < 1.8  # 2 rounds of two 0.5 s sites, in parallel
    assert np.allclose(result.params["coef"], 2.5)
    assert a.calls[0] is None and np.allclose(a.calls[1]["coef"], 2.5)  # round 2 gets the global model
    assert [r.round for r in result.history.rounds] == [1, 2]
    assert list(result.history.rounds[0].sites) == ["a", "b"]


def test_a_failing_site_is_left_out_recorded_and_asked_again():
    a, b = FakeSite("a", 1.0, 100), FakeSite("b", 3.0, 300, fail_on_round=2)
    result = federate([a, b], 3, {}, _evaluate, history=History({}), strategy=FedAvg())
    r1, r2, r3 = result.history.rounds
    assert r2.failures == {"b": "went away"} and list(r2.sites) == ["a"]
    assert np.allclose(r1.global_.test_accuracy, 2.5)   # weighted over both
    assert np.allclose(r2.global_.test_accuracy, 1.0)   # renormalised over the site that answered
    assert len(b.calls) == 3 and r3.failures == {} and list(r3.sites) == ["a", "b"]  # b rejoined
    assert result.history.to_dict()["rounds"][1]["failures"] == {"b": "went away"}


def test_below_the_quorum_the_run_stops_and_keeps_finished_rounds():
    history = History({})
    sites = [FakeSite("a", 1, 10), FakeSite("b", 1, 10, fail_on_round=2)]
    with pytest.raises(FederationError, match="round 2: only 1 of 2 sites answered, 2 needed .b: went away"):
        federate(sites, 3, {}, _evaluate, history=history, strategy=FedAvg(), min_sites=2)
    assert len(history.rounds) == 1


def test_a_site_that_does_not_answer_in_time_is_left_out():
    slow = FakeSite("slow", 9.0, 10, delay=3.0)
    start = time.perf_counter()
    result = federate([FakeSite("a", 1.0, 10), slow], 1, {}, _evaluate, history=History({}), strategy=FedAvg(),
                      site_timeout=0.5)
    assert time.perf_counter() - start < 2.0
    assert result.history.rounds[0].failures == {"slow": "no answer within 0.5 s"}
    assert np.allclose(result.params["coef"], 1.0)


def test_a_run_continues_from_its_history_and_parameters():
    history = History({})
    first = federate([FakeSite("a", 1.0, 10)], 1, {}, _evaluate, history=history, strategy=FedAvg())
    site = FakeSite("a", 2.0, 10)
    federate([site], 3, {}, _evaluate, history=history, strategy=FedAvg(), params=first.params)
    assert [r.round for r in history.rounds] == [1, 2, 3]
    assert np.allclose(site.calls[0]["coef"], 1.0)  # round 2 started from round 1's model


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 1"):
        federate([FakeSite("a", 1, 1)], 0, {}, _evaluate, history=History({}), strategy=FedAvg())
    with pytest.raises(ValueError, match="unique"):
        federate([FakeSite("a", 1, 1), FakeSite("a", 1, 1)], 1, {}, _evaluate, history=History({}), strategy=FedAvg())
    with pytest.raises(ValueError, match="rounds"):
        RunConfig(rounds=-1)
    with pytest.raises(ValueError, match="min_sites"):
        federate([FakeSite("a", 1, 1)], 1, {}, _evaluate, history=History({}), strategy=FedAvg(), min_sites=2)


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
    assert "report.html" in {p.name for p in tmp_path.iterdir()}
    for png in ("accuracy.png", "confusion_matrices.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert History.load(tmp_path).to_dict()["rounds"][0]["sites"]["MNIST Part 2"]["n_train"] == 2700


def test_a_resumed_run_ends_with_the_same_parameters(small_shards, mnist, tmp_path):
    """Interrupt a simulated run after round 1 (a site fails below the quorum), resume it, compare."""
    config = RunConfig(rounds=3, local_iters=5)
    shards = [s.subset(slice(0, 1000)) for s in small_shards]

    class Failing(LocalSite):
        def train(self, global_params, cfg):
            if global_params is not None:
                raise SiteError(self.name, "killed")
            return super().train(global_params, cfg)

    straight = run_experiment([LocalSite(f"s{i}", s) for i, s in enumerate(shards)], config, mnist.test, tmp_path / "a")
    broken = [LocalSite("s0", shards[0]), Failing("s1", shards[1])]
    with pytest.raises(FederationError, match="round 2"):
        run_experiment(broken, config, mnist.test, tmp_path / "b", min_sites=2)
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["final"]["rounds_completed"] == 1
    resumed = run_experiment([LocalSite(f"s{i}", s) for i, s in enumerate(shards)], config, mnist.test,
                             tmp_path / "b", resume=True)
    assert [r.round for r in resumed.history.rounds] == [1, 2, 3]
    assert np.array_equal(resumed.params["coef"], straight.params["coef"])  # bit for bit
    assert np.array_equal(resumed.params["intercept"], straight.params["intercept"])
    with pytest.raises(ValueError, match="its l2 is"):
        run_experiment([LocalSite(f"s{i}", s) for i, s in enumerate(shards)], RunConfig(rounds=4, local_iters=5, l2=1e-3),
                       mnist.test, tmp_path / "b", resume=True)


def test_a_checkpoint_holds_the_history_as_utf8_and_older_string_checkpoints_still_load(tmp_path):
    from fedsyft.run_dir import CHECKPOINT_FILE, RunDirectory, load_checkpoint

    history = History({"note": "é"})  # non-ASCII survives the bytes
    result = federate([FakeSite("a", 1.0, 100)], 2, {}, _evaluate, history=history, strategy=FedAvg(),
                      observers=[RunDirectory(tmp_path, history)])
    with np.load(tmp_path / CHECKPOINT_FILE) as f:
        assert f["history"].dtype == np.uint8
    loaded, params, _ = load_checkpoint(tmp_path)
    assert loaded.config == {"note": "é"} and len(loaded.rounds) == 2
    assert np.array_equal(params["coef"], result.params["coef"])
    old = tmp_path / "old"
    old.mkdir()
    np.savez(old / CHECKPOINT_FILE, coef=params["coef"], intercept=params["intercept"],
             history=np.array(history.to_json()))  # the format before: a numpy unicode string
    assert len(load_checkpoint(old)[0].rounds) == 2
