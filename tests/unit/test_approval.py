"""The approval policy's decisions, on facts as they would be read from PySyft requests."""

import dataclasses
import inspect
import json
from textwrap import dedent
from types import SimpleNamespace

import pytest

from fedsyft import task
from fedsyft.datasite.approval import (EXPECTED_INPUTS, ApprovalPolicy, AuditLog, Decision, RequestFacts,
                                       revoke_stale, review, source_sha256, training_code_sha256)

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


# ---- revoke_stale: at start, code off the current allowlist loses its approval ----

class _Code:
    """The parts of a PySyft UserCode that facts_from_request reads."""

    input_policy_type = type("MixedInputPolicy", (), {})
    output_policy_type = type("OutputPolicyExecuteCount", (), {})
    input_policy_init_kwargs: dict = {}
    nested_codes: dict = {}

    def __init__(self, raw_code: str, function: str = "local_train"):
        self.raw_code, self.service_func_name = raw_code, function


class _Request:
    requesting_user_email = "r@x.org"
    changes = [object()]

    def __init__(self, request_id: str, status: str, code: _Code, deny_fails: bool = False):
        self.id, self.status, self.code, self.deny_fails = request_id, SimpleNamespace(name=status), code, deny_fails
        self.denied = None

    def deny(self, reason):
        if self.deny_fails:
            raise RuntimeError("server said no")
        self.denied = reason


def _client(*requests):
    return SimpleNamespace(requests=SimpleNamespace(get_all=lambda: list(requests)))


CURRENT = dedent(inspect.getsource(task.local_train))
EARLIER = CURRENT.replace("def local_train(", "def local_train(  ")  # an earlier fedsyft's text
UNREADABLE_STATUS = type("R", (), {"id": "req-x", "status": property(lambda self: 1 / 0),
                                   "deny": lambda self, reason: setattr(self, "denied", reason)})


def test_revoke_stale_denies_approved_and_pending_code_off_the_allowlist_and_logs_why(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    current = _Request("ok", "APPROVED", _Code(CURRENT))
    pending_current = _Request("ok-pending", "PENDING", _Code(CURRENT))
    earlier = _Request("old", "APPROVED", _Code(EARLIER))
    earlier_pending = _Request("old-pending", "PENDING", _Code(EARLIER))
    already_denied = _Request("gone", "REJECTED", _Code(EARLIER))
    other_mode = _Request("dp", "APPROVED", _Code(dedent(inspect.getsource(task.local_train_dp)), "local_train_dp"))
    foreign = _Request("steal", "APPROVED", _Code("def steal(data, global_params, config):\n    return data\n", "steal"))
    unreadable = UNREADABLE_STATUS()
    requests = [current, pending_current, earlier, earlier_pending, already_denied, other_mode, foreign, unreadable]

    denials = revoke_stale(_client(*requests), POLICY, audit)

    assert current.denied is pending_current.denied is already_denied.denied is None  # left to the approver
    revoked = [earlier, earlier_pending, other_mode, foreign, unreadable]
    assert len(denials) == len(revoked) and not any(d.approve for d in denials)
    assert all(r.denied.startswith("fedsyft policy: ") and r.denied.endswith("denied at start") for r in revoked)
    sha = source_sha256(EARLIER)
    assert f"code sha256 {sha[:16]}… is no longer on this datasite's allowlist" in earlier.denied
    assert "fedsyft was upgraded" in earlier.denied
    assert f"code sha256 {sha[:16]}… is not on this datasite's allowlist" in earlier_pending.denied
    assert "without differential privacy" in other_mode.denied and "'steal' is not" in foreign.denied
    assert "could not be inspected (ZeroDivisionError)" in unreadable.denied
    entries = audit.entries()
    assert [e["request_id"] for e in entries] == ["old", "old-pending", "dp", "steal", "req-x"]
    assert all(e["decision"] == "denied" and "fedsyft policy: " + e["reason"] == r.denied
               for e, r in zip(entries, revoked))
    assert entries[0]["code_sha256"] == sha and entries[0]["function"] == "local_train"


def test_revoke_stale_on_a_state_with_nothing_stale_does_nothing(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    assert revoke_stale(_client(_Request("ok", "APPROVED", _Code(CURRENT))), POLICY, audit) == []
    assert audit.entries() == []


def test_a_stale_request_that_cannot_be_denied_stops_the_start(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(RuntimeError, match="could not deny request old at start.*does not serve"):
        revoke_stale(_client(_Request("old", "APPROVED", _Code(EARLIER), deny_fails=True)), POLICY, audit)
