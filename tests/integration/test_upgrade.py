"""Upgrading fedsyft on a kept datasite state: the earlier training function loses its approval, calls reach the new one.

One launch's state folder with two datasites, "Upgrade DP" (private) and "Upgrade Open"
(--no-dp), started once for this module:

1. as an earlier fedsyft would have left it: each site launched with manual approval, the
   researcher submits an earlier version of the site's training function (same name,
   different source) and the data owner approves it by hand, as the earlier fedsyft's
   approver did; the researcher calls it;
2. stopped, and relaunched on the same state folder by this fedsyft (automatic approval).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from textwrap import dedent

import pytest
from conftest import free_port_base

from fedsyft import task
from fedsyft.code_hash import source_sha256
from fedsyft.datasite.launch import Datasites
from fedsyft.datasite.server import ADMIN_EMAIL
from fedsyft.experiment import request_approval
from fedsyft.sites.syft_site import SyftSite, import_syft, quiet_stdout

pytestmark = pytest.mark.integration

NAMES = ["Upgrade DP", "Upgrade Open"]
PRIVATE = [True, False]
FUNCTIONS = ["local_train_dp", "local_train"]
MARKER = {"earlier_fedsyft": True}  # what the earlier version answers


def _earlier_version(name: str, folder) -> object:
    """``name`` as an earlier fedsyft shipped it: same name and signature, other source, a marker answer."""
    path = folder / f"earlier_{name}.py"
    path.write_text(f'''def {name}(data, global_params, config):
    """{name} of an earlier fedsyft (a stand-in): it answers with a marker and reads nothing."""
    return {MARKER!r}
''')
    spec = importlib.util.spec_from_file_location(f"earlier_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _wrapped(site: SyftSite, function):
    """``function`` submitted the way fedsyft submits its training function (same policies)."""
    sy = import_syft()
    from syft.service.policy.policy import OutputPolicyExecuteCount

    with quiet_stdout():
        return sy.syft_function(
            input_policy=sy.MixedInputPolicy(client=site.client, data=site.asset, global_params=dict, config=dict),
            output_policy=OutputPolicyExecuteCount(limit=10**6),
        )(function)


def _admin(site):
    with quiet_stdout():
        return import_syft().login(url=site.url, email=ADMIN_EMAIL, password=site.admin_password)


@pytest.fixture(scope="module")
def upgraded(mnist, tmp_path_factory):
    """The two sites after the upgrade, and what happened before it: {site index: facts}."""
    state, folder = tmp_path_factory.mktemp("upgrade-state"), tmp_path_factory.mktemp("earlier-code")
    port = free_port_base(2)
    shards = [mnist.train.subset(slice(0, 300)), mnist.train.subset(slice(300, 600))]
    before = {}
    earlier = Datasites(shards, port_base=port, state_dir=state, names=NAMES, private=PRIVATE, manual_approval=True)
    earlier.start()
    try:
        for i, (site, name) in enumerate(zip(earlier.sites, FUNCTIONS)):
            researcher = SyftSite.connect(site.credentials)
            function = _earlier_version(name, folder)
            researcher.submit(_wrapped(researcher, function))
            with quiet_stdout():
                [request] = _admin(site).requests.get_all_pending()
                request.approve(disable_warnings=True)  # by hand, as the earlier fedsyft's approver did
            # The earlier fedsyft called the function by its name: PySyft's endpoint, the only code of that name.
            endpoint = getattr(researcher.client.code, name)
            answer = endpoint(data=researcher.asset, global_params={}, config={}).get()
            before[i] = {"sha256": source_sha256(dedent(inspect.getsource(function))), "answer": answer,
                         "code_id": endpoint.user_code_id}
    finally:
        earlier.stop()
    owner = Datasites(None, n_sites=2, port_base=port, state_dir=state, names=NAMES, private=PRIVATE)
    owner.start()
    yield owner, before
    owner.stop()


@pytest.mark.parametrize("i", [0, 1], ids=["private", "no-dp"])
def test_before_the_upgrade_the_earlier_function_was_approved_and_reached(upgraded, i):
    _, before = upgraded
    if PRIVATE[i]:  # the execution guard admits only this fedsyft's DP function on private data
        assert "only the allow-listed local_train_dp" in before[i]["answer"]["error"]
    else:
        assert before[i]["answer"] == MARKER


@pytest.mark.parametrize("i", [0, 1], ids=["private", "no-dp"])
def test_at_start_the_upgraded_site_denies_the_earlier_approval_and_logs_why(upgraded, i):
    owner, before = upgraded
    site, sha = owner.sites[i], before[i]["sha256"]
    [entry] = [e for e in map(json.loads, site.audit_log.read_text().splitlines()) if e.get("code_sha256") == sha]
    assert entry["decision"] == "denied" and entry["function"] == FUNCTIONS[i]
    assert entry["reason"].startswith(f"code sha256 {sha[:16]}… is no longer on this datasite's allowlist")
    assert "fedsyft was upgraded" in entry["reason"] and entry["reason"].endswith("denied at start")
    with quiet_stdout():
        [request] = [r for r in _admin(site).requests.get_all() if source_sha256(r.code.raw_code) == sha]
        assert request.status.name == "REJECTED"
        assert request.deny_reason == f"fedsyft policy: {entry['reason']}"


@pytest.mark.parametrize("i", [0, 1], ids=["private", "no-dp"])
def test_after_the_upgrade_the_new_function_is_approved_and_calls_reach_it(upgraded, i):
    owner, before = upgraded
    name = FUNCTIONS[i]
    researcher = SyftSite.connect(owner.sites[i].credentials)
    by_name = getattr(researcher.client.code, name)  # this session's endpoint for the name: the earlier code
    assert by_name.user_code_id == before[i]["code_id"]
    request_approval([researcher], 60, name)  # this fedsyft's function: approved by the site's policy
    # PySyft keeps this session's endpoint on the earlier code even now; fedsyft calls by the code's hash.
    assert getattr(researcher.client.code, name).user_code_id == before[i]["code_id"]
    if PRIVATE[i]:
        answer = researcher.privacy_query({"query": "status"})  # answered by the guard only for the current code
        assert "privacy" in answer and "error" not in answer
    else:
        answer = researcher.call(name, global_params={}, config=dict(task.DEFAULT_TRAIN_CONFIG))
        assert "coef" in answer and "error" not in answer and "earlier_fedsyft" not in answer
    # The earlier code, reached by its id, is refused: its approval was revoked at start.
    with pytest.raises(Exception, match="DENIED.*no longer on this datasite's allowlist"):
        by_name(data=researcher.asset, global_params={}, config={}).get()
    audit = [json.loads(line) for line in owner.sites[i].audit_log.read_text().splitlines()]
    current = source_sha256(dedent(inspect.getsource(task.TRAINING_FUNCTIONS[name])))
    assert any(e.get("code_sha256") == current and e.get("decision") == "approved" for e in audit)
