"""The data owner's manual review of code requests (datasites launched with ``--manual-approval``).

``fedsyft requests`` lists what is pending on every datasite of a launch's state
folder, with what the automatic policy would decide; ``fedsyft approve`` applies the
owner's decision and records it in the site's audit log. Both log in as each
datasite's admin, with the credentials kept in the state folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..connection import ASSET_NAME, DATASET_NAME
from .approval import ApprovalPolicy, AuditLog, Decision, RequestFacts, facts_from_request
from .server import ADMIN_EMAIL


class ReviewError(ValueError):
    """The state folder, a datasite or a request cannot be found, or a decision is refused."""


@dataclass
class Pending:
    """One pending request and what the automatic policy would say of it."""

    site: str
    facts: RequestFacts
    verdict: Decision
    source: str
    request: Any  # the PySyft Request, to approve or deny


@dataclass
class OwnedSite:
    name: str
    state: Path
    admin: Any
    policy: ApprovalPolicy

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.state / "audit.jsonl")


def connect_as_owner(state_dir: Path) -> list[OwnedSite]:
    """Log in as the admin of every datasite in a launch's state folder."""
    from ..pysyft import import_syft, quiet_stdout

    folders = sorted(p for p in Path(state_dir).glob("site-*") if (p / "site.json").exists())
    if not folders:
        raise ReviewError(f"{state_dir} holds no datasite state (start them with 'fedsyft launch --state {state_dir}')")
    sy = import_syft()
    owned = []
    for folder in folders:
        spec = json.loads((folder / "site.json").read_text())
        secrets = json.loads((folder / "secrets.json").read_text())
        tls = spec.get("tls")
        url = f"{'https' if tls else 'http'}://{spec['host']}:{spec['port']}"
        try:
            with quiet_stdout():
                if tls:  # the owner pins its own certificate, as researchers do
                    from ..pinning import login as pinned_login
                    from .tls import CERT_FILE, fingerprint

                    pin = fingerprint(Path(tls["cert"]) if tls.get("cert") else folder / CERT_FILE)
                    admin = pinned_login(url, ADMIN_EMAIL, secrets["admin_password"], pin)
                else:
                    admin = sy.login(url=url, email=ADMIN_EMAIL, password=secrets["admin_password"])
        except Exception as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ReviewError(f"{spec['name']}: cannot log in as its admin at {url} "
                              f"(is 'fedsyft launch' running?): {why}") from None
        assets = [a for d in admin.datasets.get_all() if d.name == DATASET_NAME for a in d.assets if a.name == ASSET_NAME]
        policy = ApprovalPolicy.for_site(secrets["server_id"], frozenset(str(a.action_id) for a in assets),
                                         private=bool(spec.get("privacy", {}).get("private", False)))
        owned.append(OwnedSite(spec["name"], folder, admin, policy))
    return owned


def pending_requests(sites: list[OwnedSite]) -> list[Pending]:
    """Every pending request on ``sites``, with the automatic policy's verdict."""
    found = []
    for site in sites:
        for request in site.admin.requests.get_all_pending():
            try:
                facts = facts_from_request(request)
                verdict = site.policy.decide(facts)
            except Exception as e:  # what cannot be inspected is shown as such
                facts = RequestFacts(str(request.id), "?", "?", "?", 0, "?", "?", ())
                verdict = Decision(False, f"request could not be inspected ({type(e).__name__})")
            found.append(Pending(site.name, facts, verdict, getattr(request.code, "raw_code", ""), request))
    return found


def decide(sites: list[OwnedSite], request_id: str, approve: bool, reason: str = "", force: bool = False) -> Pending:
    """Approve or deny the pending request whose id starts with ``request_id``.

    Approving a request the automatic policy would deny needs ``force``: the code
    would run inside the datasite with no sandbox.
    """
    matches = [p for p in pending_requests(sites) if p.facts.request_id.startswith(request_id)]
    if not matches:
        raise ReviewError(f"no pending request with id {request_id!r} (see 'fedsyft requests')")
    if len(matches) > 1:
        raise ReviewError(f"id {request_id!r} matches {len(matches)} requests; give more of it")
    pending = matches[0]
    if approve and not pending.verdict.approve and not force:
        raise ReviewError(f"the policy would deny request {pending.facts.request_id[:12]}: {pending.verdict.reason}; "
                          "approve it anyway only with --force after reading its source")
    site = next(s for s in sites if s.name == pending.site)
    decision = Decision(approve, f"manual: {reason or ('approved' if approve else 'denied')} by the data owner")
    site.audit.record(pending.facts, decision)
    from ..pysyft import quiet_stdout

    with quiet_stdout():
        if approve:
            pending.request.approve()
        else:
            pending.request.deny(reason=decision.reason)
    return pending
