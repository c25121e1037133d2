"""The datasite's approval policy: which code requests may run on the private data.

PySyft 0.9.5 executes approved code inside the server process with no sandbox, so
this policy is the only gate, and it fails closed: a request is approved only when
every check below passes, and any error while inspecting it is a denial.

A request is approved when
1. it asks for exactly one thing: to run one function;
2. the function is this datasite's training function and the SHA-256 of its
   submitted source text is on the allowlist: fedsyft's own ``task.local_train_dp`` on a
   private (differential privacy) datasite, ``task.local_train`` on a ``--no-dp`` one;
3. its input policy is PySyft's built-in ``MixedInputPolicy`` and its output policy
   the built-in ``OutputPolicyExecuteCount`` (a custom policy class is code too);
4. the input policy binds ``data`` to this datasite's training asset and
   ``global_params`` and ``config`` to plain dicts owned by the researcher, on this
   datasite only, and the function calls no other submitted code.

Every decision is appended as one JSON line to the audit log.

The allowlist holds only this fedsyft's code. When a datasite starts on a kept state,
:func:`revoke_stale` denies every request approved (or pending) for code that is not
on it, such as the training function of an earlier fedsyft: PySyft would otherwise
keep that code approved and callable.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..code_hash import source_sha256, training_code_sha256  # noqa: F401  (one definition, shared with researchers)

log = logging.getLogger(__name__)

FUNCTION_NAME = "local_train"        # the non-private training function
DP_FUNCTION_NAME = "local_train_dp"  # the private one
INPUT_POLICY = "MixedInputPolicy"
OUTPUT_POLICY = "OutputPolicyExecuteCount"
EXPECTED_INPUTS = {"data": "Matches", "global_params": "UserOwned:dict", "config": "UserOwned:dict"}


@dataclass(frozen=True)
class RequestFacts:
    """What the policy looks at in one code request, read out of PySyft's objects."""

    request_id: str
    requester: str
    function: str
    code_sha256: str
    n_changes: int
    input_policy: str
    output_policy: str
    servers: tuple[str, ...]                      # server ids the input policy binds to
    inputs: dict[str, str] = field(default_factory=dict)  # kwarg -> rule kind, e.g. "Matches"
    bound_assets: tuple[str, ...] = ()            # action ids bound with Matches
    nested: bool = False


@dataclass(frozen=True)
class Decision:
    approve: bool
    reason: str


@dataclass(frozen=True)
class ApprovalPolicy:
    """Allowlist of code hashes plus this datasite's identity, assets and privacy mode.

    ``function`` is the one training function this datasite runs: ``local_train_dp`` when
    it is private (the default), ``local_train`` when launched with ``--no-dp``.
    """

    allowed_sha256: frozenset[str]
    server_id: str
    asset_ids: frozenset[str]
    function: str = FUNCTION_NAME

    @classmethod
    def for_site(cls, server_id: str, asset_ids: frozenset[str], private: bool) -> ApprovalPolicy:
        """The policy of a datasite: the DP training function if ``private``, else the non-private one."""
        function = DP_FUNCTION_NAME if private else FUNCTION_NAME
        return cls(frozenset([training_code_sha256(function)]), server_id, frozenset(asset_ids), function)

    def _mode_reason(self, function: str) -> str:
        if self.function == DP_FUNCTION_NAME:
            return (f"this datasite is private (differential privacy): it runs {DP_FUNCTION_NAME}, "
                    f"not the non-private {function!r}")
        return f"this datasite runs without differential privacy (--no-dp): it runs {FUNCTION_NAME}, not {function!r}"

    def decide(self, f: RequestFacts) -> Decision:
        """Approve only a request that passes every check; the first failure is the reason."""
        other_mode = f.function in (FUNCTION_NAME, DP_FUNCTION_NAME) and f.function != self.function
        checks = [
            (f.n_changes == 1, f"the request must contain one code change, found {f.n_changes}"),
            (not other_mode, self._mode_reason(f.function)),
            (f.function == self.function, f"function {f.function!r} is not {self.function!r}"),
            (f.code_sha256 in self.allowed_sha256, f"code sha256 {f.code_sha256[:16]}… is not on the allowlist"),
            (f.input_policy == INPUT_POLICY, f"input policy {f.input_policy} is not the built-in {INPUT_POLICY}"),
            (f.output_policy == OUTPUT_POLICY, f"output policy {f.output_policy} is not the built-in {OUTPUT_POLICY}"),
            (f.servers == (self.server_id,), "the input policy must bind inputs on this datasite only"),
            (f.inputs == EXPECTED_INPUTS, f"inputs {f.inputs} are not {EXPECTED_INPUTS}"),
            (len(f.bound_assets) == 1 and set(f.bound_assets) <= self.asset_ids,
             "the code must use this datasite's training asset and nothing else"),
            (not f.nested, "the code calls other submitted code"),
        ]
        for ok, reason in checks:
            if not ok:
                return Decision(False, reason)
        what = "private (DP) training function" if self.function == DP_FUNCTION_NAME else "training function"
        return Decision(True, f"allow-listed fedsyft {what}")


def _policy_name(policy_type: Any) -> str:
    # A built-in policy arrives as a class; a custom one as a UserPolicy object.
    if isinstance(policy_type, type):
        return policy_type.__name__
    return f"custom:{type(policy_type).__name__}"


def _rule_kind(rule: Any) -> str:
    kind = type(rule).__name__
    if kind == "UserOwned":
        return f"UserOwned:{getattr(rule.type, '__name__', rule.type)}"
    return kind


def facts_from_request(request: Any) -> RequestFacts:
    """Read the policy-relevant facts out of a PySyft ``Request``."""
    code = request.code
    bindings = code.input_policy_init_kwargs or {}
    inputs: dict[str, str] = {}
    assets: list[str] = []
    for rules in bindings.values():
        for kw, rule in rules.items():
            inputs[kw] = _rule_kind(rule)
            if type(rule).__name__ == "Matches":
                assets.append(str(rule.val))
    return RequestFacts(
        request_id=str(request.id),
        requester=str(request.requesting_user_email),
        function=str(code.service_func_name),
        code_sha256=source_sha256(code.raw_code),
        n_changes=len(request.changes),
        input_policy=_policy_name(code.input_policy_type),
        output_policy=_policy_name(code.output_policy_type),
        servers=tuple(str(k.server_id) for k in bindings),
        inputs=inputs,
        bound_assets=tuple(assets),
        nested=bool(code.nested_codes),
    )


class AuditLog:
    """Append-only JSON-lines record of every approval decision and every privacy debit or refusal."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _append(self, entry: dict) -> None:
        with self._lock, self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()

    def record(self, facts: RequestFacts | None, decision: Decision, request_id: str = "") -> None:
        self._append({
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "request_id": facts.request_id if facts else request_id,
            "requester": facts.requester if facts else None,
            "function": facts.function if facts else None,
            "code_sha256": facts.code_sha256 if facts else None,
            "decision": "approved" if decision.approve else "denied",
            "reason": decision.reason,
        })

    def event(self, kind: str, fields: dict) -> None:
        """A privacy event (``privacy_debit``, ``privacy_refused``, ``privacy_budget``) with its details."""
        self._append({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": kind,
                      **fields})

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def review(request: Any, policy: ApprovalPolicy, audit: AuditLog) -> Decision:
    """Decide one pending request, apply the decision in PySyft, and log it."""
    try:
        facts = facts_from_request(request)
        decision = policy.decide(facts)
    except Exception as e:  # fail closed: what cannot be inspected is not run
        facts, decision = None, Decision(False, f"request could not be inspected ({type(e).__name__})")
    # Logged before it takes effect: nobody sees an approval the audit log does not hold yet.
    audit.record(facts, decision, request_id=str(getattr(request, "id", "")))
    if decision.approve:
        request.approve()
    else:
        request.deny(reason=f"fedsyft policy: {decision.reason}")
    return decision


def _stale_reason(facts: RequestFacts, policy: ApprovalPolicy, was_approved: bool) -> str:
    if facts.function == policy.function:
        why = f"it is not this fedsyft's {policy.function}"
        if was_approved:
            why += " (fedsyft was upgraded since, or the code was approved by hand)"
    elif facts.function in (FUNCTION_NAME, DP_FUNCTION_NAME):
        why = policy._mode_reason(facts.function)
    else:
        why = f"{facts.function!r} is not this datasite's training function {policy.function!r}"
    return (f"code sha256 {facts.code_sha256[:16]}… is {'no longer' if was_approved else 'not'} on this "
            f"datasite's allowlist: {why}; denied at start")


def revoke_stale(client: Any, policy: ApprovalPolicy, audit: AuditLog) -> list[Decision]:
    """Deny every approved or pending code request whose code is not on ``policy``'s allowlist.

    Run once when a datasite starts, before it serves. A kept state may hold a request
    approved under an earlier fedsyft whose training function differed: PySyft keeps it
    approved, and its code stays callable under the function's name (or by its id)
    next to the current one. ``Request.deny`` undoes an approved request in PySyft
    0.9.5: the request becomes REJECTED and its code's status DENIED, so calls to it
    are refused. Each denial is logged, with its reason, before it takes effect. A
    request that cannot be inspected is denied too, and a denial that fails raises: the
    datasite then does not serve (fail closed). Returns the denials.
    """
    denials = []
    for request in client.requests.get_all():
        request_id = str(getattr(request, "id", ""))
        try:
            status = request.status.name  # APPROVED, PENDING or REJECTED
            if status == "REJECTED":
                continue
            facts = facts_from_request(request)
            if facts.code_sha256 in policy.allowed_sha256:
                continue
            decision = Decision(False, _stale_reason(facts, policy, was_approved=status == "APPROVED"))
        except Exception as e:  # fail closed: what cannot be inspected does not stay approved
            facts, decision = None, Decision(False, f"request could not be inspected ({type(e).__name__}); "
                                                    "denied at start")
        audit.record(facts, decision, request_id=request_id)
        try:
            request.deny(reason=f"fedsyft policy: {decision.reason}")
        except Exception as e:  # fail closed: a datasite that cannot revoke stale code does not serve
            raise RuntimeError(f"could not deny request {request_id} at start ({type(e).__name__}: {e}); "
                               "the datasite does not serve while code off its allowlist may stay approved") from e
        denials.append(decision)
    return denials


class Approver(threading.Thread):
    """Polls the datasite for pending requests and reviews each (PySyft has no hook for new ones)."""

    def __init__(self, client: Any, policy: ApprovalPolicy, audit: AuditLog, interval: float = 0.5):
        super().__init__(name="fedsyft-approver", daemon=True)
        self.client, self.policy, self.audit, self.interval = client, policy, audit, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                for request in self.client.requests.get_all_pending():
                    review(request, self.policy, self.audit)
            except Exception:  # keep polling: one bad poll must not open or close the gate for good
                log.exception("approval poll failed")
