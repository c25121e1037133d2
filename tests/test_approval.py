"""The approval policy's decisions, on facts as they would be read from PySyft requests."""

import dataclasses
import inspect
import json
from textwrap import dedent

import pytest

from fedsyft import task
from fedsyft.datasite.approval import (EXPECTED_INPUTS, ApprovalPolicy, AuditLog, Decision, RequestFacts, review,
                                       source_sha256, training_code_sha256)

SERVER, ASSET = "a" * 32, "b" * 32
POLICY = ApprovalPolicy(frozenset([training_code_sha256()]), SERVER, frozenset([ASSET]))
GOOD = RequestFacts(request_id="r1", requester="r@x.org", function="local_train", code_sha256=training_code_sha256(),
                    n_changes=1, input_policy="MixedInputPolicy", output_policy="OutputPolicyExecuteCount",
                    servers=(SERVER,), inputs=dict(EXPECTED_INPUTS), bound_assets=(ASSET,), nested=False)


def test_the_training_function_is_approved():
    assert POLICY.decide(GOOD) == Decision(True, "allow-listed fedsyft training function")


DP_POLICY = ApprovalPolicy.for_site(SERVER, frozenset([ASSET]), private=True)
DP_GOOD = dataclasses.replace(GOOD, function="local_train_dp", code_sha256=training_code_sha256("local_train_dp"))


def test_a_private_site_approves_only_the_dp_function_and_a_no_dp_site_only_the_other():
    assert DP_POLICY.decide(DP_GOOD).approve
    assert ApprovalPolicy.for_site(SERVER, frozenset([ASSET]), private=False) == POLICY
    denied = DP_POLICY.decide(GOOD)
    assert not denied.approve and "private (differential privacy)" in denied.reason
    denied = POLICY.decide(DP_GOOD)
    assert not denied.approve and "without differential privacy" in denied.reason
    # The DP function's name with the non-private function's code (or any other) is not on the allowlist.
    assert "not on the allowlist" in DP_POLICY.decide(dataclasses.replace(GOOD, function="local_train_dp")).reason


def test_hash_is_of_the_source_pysyft_submits():
    assert training_code_sha256() == source_sha256(dedent(inspect.getsource(task.local_train)))


def test_one_changed_line_changes_the_hash():
    changed = dedent(inspect.getsource(task.local_train)).replace('"n_train": int(n_train)', '"n_train": X.tolist()')
    assert changed != dedent(inspect.getsource(task.local_train))
    assert source_sha256(changed) != training_code_sha256()


@pytest.mark.parametrize("change, reason", [
    ({"code_sha256": "0" * 64}, "not on the allowlist"),
    ({"function": "steal"}, "is not 'local_train'"),
    ({"n_changes": 2}, "one code change"),
    ({"input_policy": "custom:UserPolicy"}, "input policy"),
    ({"output_policy": "custom:UserPolicy"}, "output policy"),
    ({"output_policy": "SingleExecutionExactOutput"}, "output policy"),
    ({"servers": (SERVER, "c" * 32)}, "this datasite only"),
    ({"servers": ("c" * 32,)}, "this datasite only"),
    ({"bound_assets": ("c" * 32,)}, "training asset"),
    ({"bound_assets": ()}, "training asset"),
    ({"bound_assets": (ASSET, ASSET)}, "training asset"),
    ({"inputs": {**EXPECTED_INPUTS, "config": "Constant"}}, "inputs"),
    ({"inputs": {**EXPECTED_INPUTS, "extra": "UserOwned:dict"}}, "inputs"),
    ({"nested": True}, "other submitted code"),
])
def test_every_deviation_is_denied(change, reason):
    decision = POLICY.decide(dataclasses.replace(GOOD, **change))
    assert not decision.approve and reason in decision.reason


class _FakeRequest:
    """Stands in for a PySyft Request whose code cannot be read."""

    id = "req-9"
    approved = denied = None

    @property
    def code(self):
        raise RuntimeError("boom")

    def approve(self):
        self.approved = True

    def deny(self, reason):
        self.denied = reason


def test_a_request_that_cannot_be_inspected_is_denied_and_logged(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    request = _FakeRequest()
    decision = review(request, POLICY, audit)
    assert not decision.approve and request.approved is None and "could not be inspected" in request.denied
    [entry] = audit.entries()
    assert entry["decision"] == "denied" and entry["request_id"] == "req-9"
    assert set(entry) == {"time", "request_id", "requester", "function", "code_sha256", "decision", "reason"}
    json.dumps(entry)
