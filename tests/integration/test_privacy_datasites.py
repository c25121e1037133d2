"""Privacy against a curious researcher, on real datasites: the reconstruction attack, the budget, the ledger.

Three small datasites on free loopback ports, started once for this module:
- "Private A" (40 rows, default budget): the attack's target;
- "Private B" (300 rows, default budget): runs, concurrency, two accounts, restart, a corrupt ledger;
- "Open C" (40 rows, --no-dp): the same attack against the non-private function, to show it can succeed.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import free_port_base
from reconstruction import attack_non_private, attack_private, recovered

from fedsyft.connection import SiteCredentials
from fedsyft.datasite.launch import DEFAULT_EPSILON_BUDGET, Datasites
from fedsyft.datasite.server import ADMIN_EMAIL
from fedsyft.experiment import RunConfig, request_approval, run_experiment
from fedsyft.privacy import PrivatePlan, epsilon_spent, noise_multiplier_for
from fedsyft.privacy.plan import sampling_for
from fedsyft.sites import SiteError
from fedsyft.sites.syft_site import SyftSite, import_syft, quiet_stdout

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shards(mnist):
    train = mnist.train
    return [train.subset(slice(0, 40)), train.subset(slice(100, 400)), train.subset(slice(500, 540))]


@pytest.fixture(scope="module")
def owner(shards, tmp_path_factory):
    ds = Datasites(shards, port_base=free_port_base(3), state_dir=tmp_path_factory.mktemp("private-state"),
                   names=["Private A", "Private B", "Open C"], private=[True, True, False])
    ds.start()
    yield ds
    ds.stop()


def _researcher(owner, i, email=None):
    """A researcher's connection to site i (a new account when ``email`` is given), DP function approved if private."""
    site = owner.sites[i]
    creds = site.credentials
    if email:
        with quiet_stdout():
            admin = import_syft().login(url=site.url, email=ADMIN_EMAIL, password=site.admin_password)
            admin.users.create(name="Mallory", email=email, password="pw-mallory-1", password_verify="pw-mallory-1")
        creds = SiteCredentials(creds.name, creds.url, email, "pw-mallory-1", creds.privacy)
    researcher = SyftSite.connect(creds)
    request_approval([researcher], 60, "local_train_dp" if owner.private[i] else "local_train")
    return researcher


def _call(researcher, function):
    return lambda params, config: researcher.call(function, global_params=params, config=config)


def test_the_connection_file_says_which_sites_are_private(owner):
    privacy = [s.credentials.privacy for s in owner.sites]
    assert privacy[0] == {"private": True, "epsilon_budget": DEFAULT_EPSILON_BUDGET, "delta": 1e-5}
    assert privacy[1] == privacy[0] and privacy[2] == {"private": False}


def test_each_site_approves_only_the_function_of_its_mode(owner):
    private, open_ = SyftSite.connect(owner.sites[1].credentials), SyftSite.connect(owner.sites[2].credentials)
    private.submit(name="local_train")
    with pytest.raises(SiteError, match="private \\(differential privacy\\).*not the non-private 'local_train'"):
        private.wait_for_approval(30, "local_train")
    open_.submit(name="local_train_dp")
    with pytest.raises(SiteError, match="without differential privacy"):
        open_.wait_for_approval(30, "local_train_dp")


def test_the_attack_recovers_every_row_from_a_no_dp_site(owner, shards):
    """The test below can fail: against the non-private function the same researcher gets every row."""
    researcher = _researcher(owner, 2)
    images, labels = attack_non_private(_call(researcher, "local_train"), n_calls=48)
    rows, label_share = recovered(images, labels, shards[2].X, shards[2].y)
    assert rows == 1.0 and label_share == 1.0


def test_the_attack_recovers_no_row_from_a_private_site_and_calls_past_the_budget_are_refused(owner, shards):
    researcher = _researcher(owner, 0, email="mallory-a@fedsyft.org")
    status = researcher.privacy_query({"query": "status"})["privacy"]
    # The least noise that lets 20 full-batch calls fit what remains: the attacker's best deal.
    sigma = noise_multiplier_for(status["epsilon_remaining"], 1.0, 20, status["delta"])
    images, labels, answers = attack_private(_call(researcher, "local_train_dp"), sigma)
    served = [a for a in answers if "error" not in a]
    refused = answers[-1]
    assert 15 <= len(served) <= 25
    assert "budget exhausted" in refused["error"] and "remaining" in refused["error"]
    assert {"coef", "intercept", "n_train", "privacy"} == set(served[0])  # no metric, no label count
    rows, label_share = recovered(images, labels, shards[0].X, shards[0].y)
    assert rows == 0.0
    assert label_share <= 0.5  # the 1.0 of the open site; chance here is about 0.1-0.2
    # Every served call was charged once (the mock twin PySyft also runs is free), and no more than the budget.
    ledger = json.loads(owner.sites[0].ledger.read_text())
    assert len(ledger["charges"]) == len(served)
    assert served[-1]["privacy"]["epsilon_spent"] <= DEFAULT_EPSILON_BUDGET


def test_a_private_run_records_epsilon_and_withholds_local_metrics(owner, mnist, tmp_path):
    researcher = _researcher(owner, 1)
    config = RunConfig(rounds=2, epsilon=1.0, delta=1e-5)
    result = run_experiment([researcher], config, mnist.test.subset(slice(0, 2000)), tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    sized = RunConfig(rounds=2, epsilon=1.0, delta=1e-5, site_rows=len(owner.shards[1]))  # what the run resolved
    assert doc["config"]["privacy"]["noise_multiplier"] == pytest.approx(sized.plan.noise_multiplier)
    for r in doc["rounds"]:
        site = r["sites"]["Private B"]
        assert site["train_accuracy"] is None and site["confusion_matrix"] is None and "test_accuracy" in site["withheld"]
        assert site["delta"] == 1e-5 and 0 < site["epsilon_spent"] <= 1.0 + 1e-9
    assert doc["rounds"][1]["sites"]["Private B"]["epsilon_spent"] > doc["rounds"][0]["sites"]["Private B"]["epsilon_spent"]
    # The researcher still evaluates the global model on its own test set (accuracy at this size: benchmarks).
    assert all(r["global"]["test_accuracy"] is not None and len(r["global"]["confusion_matrix"]) == 10
               for r in doc["rounds"])
    assert np.abs(result.params["coef"]).sum() > 0
    assert "withheld" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("strategy", ["scaffold", "fedprox"])
def test_strategies_run_privately_and_add_no_privacy_cost(owner, mnist, strategy):
    """SCAFFOLD's correction, FedProx's mu and the researcher's public centre ride along in the DP config; each call
    costs what plain DP-SGD does."""
    researcher = _researcher(owner, 1)
    before = json.loads(owner.sites[1].ledger.read_text())["charges"]
    config = RunConfig(rounds=2, epsilon=0.5, strategy=strategy, center=True)
    result = run_experiment([researcher], config, mnist.test.subset(slice(0, 1000)), None)
    charges = json.loads(owner.sites[1].ledger.read_text())["charges"][len(before):]
    assert len(charges) == 2
    # the site's status gave its row count, and the run sized its sampling by it (sampling_for)
    recorded = result.history.config
    assert recorded["site_rows"] == len(owner.shards[1]) and recorded["center"] is True
    sample_rate, steps = sampling_for(len(owner.shards[1]))
    assert (recorded["privacy"]["sample_rate"], recorded["privacy"]["steps_per_round"]) == (sample_rate, steps)
    assert all(c["noise_multiplier"] == recorded["privacy"]["noise_multiplier"] and c["steps"] == steps
               and c["sample_rate"] == sample_rate for c in charges)
    assert np.isfinite(result.params["coef"]).all()


def test_a_plan_that_does_not_fit_is_refused_before_any_data_is_read(owner, mnist):
    researcher = _researcher(owner, 1)
    before = json.loads(owner.sites[1].ledger.read_text())["charges"]
    with pytest.raises(SiteError, match="does not fit this site's privacy budget.*remaining"):
        run_experiment([researcher], RunConfig(rounds=20, epsilon=50.0), mnist.test, None)
    assert json.loads(owner.sites[1].ledger.read_text())["charges"] == before


def test_concurrent_calls_from_two_accounts_cannot_overspend(owner):
    first, second = _researcher(owner, 1), _researcher(owner, 1, email="mallory-b@fedsyft.org")
    status = first.privacy_query({"query": "status"})["privacy"]
    # Noise such that exactly 3 more calls of this kind fit the remaining budget.
    ledger = json.loads(owner.sites[1].ledger.read_text())
    from fedsyft.privacy.accountant import Mechanism

    past = [Mechanism(c["noise_multiplier"], c["sample_rate"], c["steps"]) for c in ledger["charges"]]
    fits = lambda sigma, k: epsilon_spent(past + [Mechanism(sigma, 0.5, 5)] * k, 1e-5) <= status["epsilon_budget"]
    # The least noise at which 3 more calls fit, to 0.2 %: a 4th then cannot (3 and 4 calls need
    # noise some 15 % apart). Bisected on log σ; each step is an accountant run of ~40 ms.
    lo, hi = np.log(0.05), np.log(50.0)
    for _ in range(12):
        lo, hi = (lo, (lo + hi) / 2) if fits(np.exp((lo + hi) / 2), 3) else ((lo + hi) / 2, hi)
    sigma = float(np.exp(hi))
    assert fits(sigma, 3) and not fits(sigma, 4)
    config = {"noise_multiplier": sigma, "sample_rate": 0.5, "steps": 5, "clip": 1.0, "lr": 1.0, "l2": 0.0}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda r: r.call("local_train_dp", global_params={}, config=config),
                                [first, second] * 3))
    served = [a for a in answers if "error" not in a]
    assert len(served) == 3 and all("budget exhausted" in a["error"] for a in answers if "error" in a)
    assert first.privacy_query({"query": "status"})["privacy"]["epsilon_spent"] <= status["epsilon_budget"]
    # Both accounts see one ledger.
    assert (first.privacy_query({"query": "status"})["privacy"]
            == second.privacy_query({"query": "status"})["privacy"])


def test_a_restart_keeps_the_spent_budget(owner):
    before = SyftSite.connect(owner.sites[1].credentials)
    request_approval([before], 60, "local_train_dp")
    spent = before.privacy_query({"query": "status"})["privacy"]
    owner.stop()
    owner.start()
    after = _researcher(owner, 1)
    assert after.privacy_query({"query": "status"})["privacy"] == spent


def test_a_corrupt_ledger_refuses_every_private_call(owner):
    researcher = _researcher(owner, 1)
    path = owner.sites[1].ledger
    backup = path.with_name("ledger.backup")
    shutil.copy(path, backup)
    try:
        doc = json.loads(path.read_text())
        doc["charges"] = doc["charges"][:1]  # someone "frees" budget by hand
        path.write_text(json.dumps(doc))
        answer = researcher.call("local_train_dp", global_params={},
                                 config=PrivatePlan(epsilon=1.0, rounds=100).train_config())
        assert "corrupt" in answer["error"] and "coef" not in answer
        assert "corrupt" in researcher.privacy_query({"query": "status"})["error"]
    finally:
        shutil.copy(backup, path)
    assert "privacy" in researcher.privacy_query({"query": "status"})
    audit = [json.loads(line) for line in owner.sites[1].audit_log.read_text().splitlines()]
    assert any(e.get("event") == "privacy_refused" and "corrupt" in e["reason"] for e in audit)
    assert any(e.get("event") == "privacy_debit" for e in audit)
