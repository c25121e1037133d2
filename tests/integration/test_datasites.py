"""Integration tests on real PySyft datasites (shared session fixture, loopback ports)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
from textwrap import dedent

import numpy as np
import pytest

from fedsyft import task
from fedsyft.connection import SiteCredentials
from fedsyft.datasite.approval import source_sha256, training_code_sha256
from fedsyft.datasite.server import ADMIN_EMAIL
from fedsyft.experiment import RunConfig, run_experiment
from fedsyft.sites import LocalSite, SiteError
from fedsyft.sites.syft_site import SyftSite, import_syft, quiet_stdout

pytestmark = pytest.mark.integration


def test_federated_run_matches_the_simulation(researcher_sites, small_shards, mnist, tmp_path):
    real = run_experiment(researcher_sites, RunConfig(rounds=2), mnist.test, tmp_path / "real")
    local = [LocalSite(s.name, shard) for s, shard in zip(researcher_sites, small_shards)]
    sim = run_experiment(local, RunConfig(rounds=2), mnist.test, None)
    # Same function, same shards: the datasites compute what the simulation does.
    assert np.allclose(real.params["coef"], sim.params["coef"], atol=1e-5)
    for r_real, r_sim in zip(real.history.rounds, sim.history.rounds):
        assert r_real.global_.test_accuracy == pytest.approx(r_sim.global_.test_accuracy, abs=2e-4)
    doc = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert doc["final"]["global_test_accuracy"] > 0.87
    assert doc["config"]["site_kind"] if "site_kind" in doc["config"] else True
    for site in doc["rounds"][-1]["sites"].values():
        assert site["n_train"] == 2700 and 0.8 < site["test_accuracy"] <= 1
        assert 0 < site["compute_seconds"] < site["seconds"]


@pytest.mark.parametrize("strategy, settings", [("fedprox", {"mu": 0.1}), ("scaffold", {}),
                                                ("fedadam", {"server_lr": 0.01, "ema": 0.5})])
def test_each_strategy_family_runs_on_datasites_as_in_simulation(researcher_sites, small_shards, mnist, strategy,
                                                                 settings):
    """Site-side terms (FedProx's mu, SCAFFOLD's correction and control variates) cross PySyft intact.

    The server optimizer runs with ``ema``: the reported model is the researcher's moving average.
    """
    config = RunConfig(rounds=2, local_iters=5, strategy=strategy, **settings)
    test = mnist.test.subset(slice(0, 2000))
    real = run_experiment(researcher_sites, config, test, None)
    local = [LocalSite(s.name, shard) for s, shard in zip(researcher_sites, small_shards)]
    sim = run_experiment(local, config, test, None)
    assert np.allclose(real.params["coef"], sim.params["coef"], atol=1e-5)
    assert np.allclose(real.aggregate["coef"], sim.aggregate["coef"], atol=1e-5)
    assert real.history.final_accuracy == pytest.approx(sim.history.final_accuracy, abs=2e-4)


def test_researcher_cannot_read_the_private_asset(researcher_sites):
    site = researcher_sites[0]
    with quiet_stdout():
        assert site.asset.data is None  # PySyft refuses (and prints a SyftError)
    mock_X, mock_y = site.asset.mock
    assert mock_X.shape == (1000, 784) and mock_X.dtype == np.uint8 and set(np.unique(mock_y)) == set(range(10))
    with pytest.raises(Exception, match="not found|permission"):
        site.client.api.services.action.get(site.asset.action_id)


def test_wrong_password_and_unreachable_site_get_clear_errors(datasites):
    good = datasites.sites[0].credentials
    with pytest.raises(SiteError, match="wrong email or password"):
        SyftSite.connect(SiteCredentials(good.name, good.url, good.email, "not-the-password"))
    with pytest.raises(SiteError, match="wrong email or password"):
        SyftSite.connect(SiteCredentials(good.name, good.url, "nobody@fedsyft.org", "x"))
    from conftest import free_port_base

    with pytest.raises(SiteError, match="cannot reach"):
        SyftSite.connect(SiteCredentials("gone", f"http://127.0.0.1:{free_port_base(1)}", good.email, "x"))


# ---- attacks, from a second researcher account so the main one stays clean ----

@pytest.fixture(scope="module")
def admin(datasites):
    site = datasites.sites[0]
    with quiet_stdout():
        return import_syft().login(url=site.url, email=ADMIN_EMAIL, password=site.admin_password)


@pytest.fixture
def attacker(admin, datasites, request):
    """A fresh researcher account per attack (PySyft refuses a second request for the same code text)."""
    site = datasites.sites[0]
    email = f"mallory-{abs(hash(request.node.name)) % 10**8}@fedsyft.org"
    with quiet_stdout():
        admin.users.create(name="Mallory", email=email, password="pw-mallory-1", password_verify="pw-mallory-1")
    return SyftSite.connect(SiteCredentials(site.name, site.url, email, "pw-mallory-1"))


def steal_rows(data, global_params, config):
    X, y = data
    return {"rows": X[:100], "labels": y[:100]}


MARKER = "/tmp/fedsyft-test-attack-ran"  # the attacks below would create it if they ever ran


def read_host_file(data, global_params, config):
    open("/tmp/fedsyft-test-attack-ran", "w").write("ran")
    return open("/etc/passwd").read()


def _wrap(site, function, asset=None, output_policy=None):
    sy = import_syft()
    from syft.service.policy.policy import OutputPolicyExecuteCount

    with quiet_stdout():
        return sy.syft_function(
            input_policy=sy.MixedInputPolicy(client=site.client, data=asset or site.asset, global_params=dict, config=dict),
            output_policy=output_policy or OutputPolicyExecuteCount(limit=10),
        )(function)


def _changed_local_train(tmp_path):
    """fedsyft's own training function with one line changed: it also returns the data."""
    source = dedent(inspect.getsource(task.local_train))
    changed = source.replace('"n_train": int(n_train), "n_test": int(len(yte)),',
                             '"n_train": int(n_train), "n_test": X[:10].tolist(),')
    assert changed != source
    path = tmp_path / "tampered.py"
    path.write_text(changed)
    spec = importlib.util.spec_from_file_location("tampered", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.local_train


def _denied_and_never_run(attacker, datasites, wrapped, name, code_sha256, reason):
    attacker.submit(wrapped)
    with pytest.raises(SiteError, match=f"denied the code request: fedsyft policy: .*{reason}"):
        attacker.wait_for_approval(timeout=30, function_name=name)
    with pytest.raises(SiteError, match="DENIED|denied"):
        attacker.call(name, global_params={}, config=dict(task.DEFAULT_TRAIN_CONFIG))
    entries = [e for e in map(json.loads, datasites.sites[0].audit_log.read_text().splitlines())
               if e.get("code_sha256") == code_sha256 and e.get("requester") == attacker.credentials.email]
    assert entries and all(e["decision"] == "denied" and e["function"] == name for e in entries)
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("make, reason", [
    (lambda tmp: steal_rows, "is not 'local_train'"),
    (lambda tmp: read_host_file, "is not 'local_train'"),
    (_changed_local_train, "not on the allowlist"),
], ids=["returns-private-rows", "reads-host-files", "one-line-changed"])
def test_policy_denies_foreign_code_and_it_never_runs(attacker, datasites, tmp_path, make, reason):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    function = make(tmp_path)
    submitted = source_sha256(dedent(inspect.getsource(function)))
    assert submitted != training_code_sha256()
    _denied_and_never_run(attacker, datasites, _wrap(attacker, function), function.__name__, submitted, reason)


def test_policy_denies_the_training_function_on_data_it_was_not_meant_to_use(attacker, admin, datasites):
    sy = import_syft()
    with quiet_stdout():
        admin.upload_dataset(sy.Dataset(name="patients", asset_list=[sy.Asset(
            name="records", data=(np.ones((20, 784), np.uint8), np.zeros(20, np.int64)),
            mock=(np.zeros((20, 784), np.uint8), np.zeros(20, np.int64)))]))
    with quiet_stdout():
        other = [a for d in attacker.client.datasets.get_all() if d.name == "patients" for a in d.assets][0]
    wrapped = _wrap(attacker, task.local_train, asset=other)
    _denied_and_never_run(attacker, datasites, wrapped, "local_train", training_code_sha256(), "training asset")


class LeakyOutputPolicy(import_syft().CustomOutputPolicy):
    """A custom output policy: PySyft would run this class's code on the datasite."""

    def __init__(self):
        self.state = {}

    def apply_to_output(self, context, outputs, update_policy=True):
        open("/tmp/fedsyft-test-attack-ran", "w").write("ran")
        return outputs

    def update_policy(self, context, outputs):
        pass


def test_policy_denies_the_exact_training_function_with_a_custom_policy_class(attacker, datasites):
    wrapped = _wrap(attacker, task.local_train, output_policy=LeakyOutputPolicy())
    _denied_and_never_run(attacker, datasites, wrapped, "local_train", training_code_sha256(), "output policy")


def test_a_call_over_the_work_limit_is_refused_at_once_on_a_no_dp_datasite(researcher_sites, datasites):
    """Today's maximum, 1,000 L-BFGS iterations, against the default limit (100 passes): one line, under a second."""
    import time

    site = researcher_sites[0]
    start = time.perf_counter()
    assert site.status("local_train")["limits"]["max_passes"] == 100  # published to the researcher
    status_seconds = time.perf_counter() - start  # PySyft's round trip alone
    start = time.perf_counter()
    answer = site.call("local_train", global_params={}, config={**task.DEFAULT_TRAIN_CONFIG, "local_iters": 1000})
    seconds = time.perf_counter() - start
    assert answer == {"error": "refused: this call asks for 1000 passes over the data; this datasite's owner "
                               "allows at most 100 per call (max_passes)"}
    # The gate answers before any work (1,000 iterations would take minutes): as fast as a status answer,
    # under a second on a quiet machine (PySyft's round trip is most of it).
    assert seconds < min(5.0, status_seconds + 1.0), (seconds, status_seconds)
    logged = [e for e in map(json.loads, datasites.sites[0].audit_log.read_text().splitlines())
              if e.get("event") == "limit_refused"]
    assert logged and "1000 passes" in logged[-1]["reason"]
