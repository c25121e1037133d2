"""A site that is a real PySyft 0.9.5 datasite, reached over HTTP as the researcher.

The researcher never reads the private asset: it submits ``task.local_train`` as a
code request, waits for the data owner's policy to approve it, and then calls the
approved function with the global parameters each round.

A training function is called by the hash of its source, not by its name: PySyft
0.9.5 builds one ``client.code.<name>`` endpoint per name, which a session keeps on
whichever code of that name it saw first, so on a datasite that also holds an
earlier version of ``local_train`` the name may reach that version.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from .. import task
from ..aggregate import Params
from ..code_hash import source_sha256, training_code_sha256
from ..connection import ASSET_NAME, DATASET_NAME, SiteCredentials
from ..pysyft import import_syft, quiet_stdout  # noqa: F401  (re-exported: sites' callers use them)
from .base import SiteError, SiteResult, parse_output, payload_bytes

def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "public_message", None) or e).strip()
    text = re.sub(r"^<class '[\w.]+'>\s*", "", text)  # PySyft prefixes some messages with a class repr
    return text.splitlines()[0] if text else type(e).__name__


def _transport_error(e: BaseException) -> bool:
    import requests

    return isinstance(e, requests.exceptions.RequestException | ConnectionError | TimeoutError)


class SyftSite:
    """One datasite as the researcher sees it. Create with :meth:`connect`."""

    def __init__(self, credentials: SiteCredentials, client: Any, asset: Any):
        self.credentials = credentials
        self.name = credentials.name
        self.client = client
        self.asset = asset
        self._functions: dict[str, Any] = {}
        self._codes: dict[str, tuple[Any, Any]] = {}  # training function name -> (UserCode id, signature)

    @classmethod
    def connect(cls, credentials: SiteCredentials) -> SyftSite:
        """Log in and find the site's training asset; :class:`SiteError` with a clear reason otherwise."""
        sy = import_syft()
        c = credentials
        from ..pinning import PinningError, login as pinned_login

        try:
            with quiet_stdout():
                if c.tls_fingerprint:  # https with a pinned certificate: nothing is sent to another server
                    client = pinned_login(c.url, c.email, c.password, c.tls_fingerprint)
                else:
                    client = sy.login(url=c.url, email=c.email, password=c.password)
        except PinningError as e:
            raise SiteError(c.name, f"{e}: not the datasite the connection file names; nothing was sent") from None
        except Exception as e:
            if _transport_error(e):
                raise SiteError(c.name, f"cannot reach {c.url}: is the datasite running?") from None
            message = _first_line(e)
            if "Invalid credentials" in message or "Item not found" in message:
                raise SiteError(c.name, f"login to {c.url} as {c.email} refused: wrong email or password") from None
            raise SiteError(c.name, f"login to {c.url} failed: {message}") from None
        assets = [a for d in client.datasets.get_all() if d.name == DATASET_NAME for a in d.assets
                  if a.name == ASSET_NAME]
        if len(assets) != 1:
            raise SiteError(c.name, f"expected one dataset {DATASET_NAME!r} with asset {ASSET_NAME!r}, found {len(assets)}")
        return cls(credentials, client, assets[0])

    def training_function(self, name: str = "local_train") -> Any:
        """A training function of :mod:`fedsyft.task` wrapped as a PySyft function bound to this site's asset.

        ``name`` is ``"local_train"`` (non-private sites) or ``"local_train_dp"`` (private ones).
        """
        if name not in self._functions:
            sy = import_syft()
            from syft.service.policy.policy import OutputPolicyExecuteCount

            with quiet_stdout():
                self._functions[name] = sy.syft_function(
                    input_policy=sy.MixedInputPolicy(client=self.client, data=self.asset,
                                                     global_params=dict, config=dict),
                    # The count is not enforced by PySyft 0.9.5; the data owner's gate is the code hash.
                    output_policy=OutputPolicyExecuteCount(limit=10**6),
                )(task.TRAINING_FUNCTIONS[name])
        return self._functions[name]

    def submit(self, function: Any = None, name: str = "local_train") -> None:
        """Send the code request (once: a request already on the site is reused)."""
        function = function if function is not None else self.training_function(name)
        try:
            with quiet_stdout():
                self.client.code.request_code_execution(function)
        except Exception as e:
            if "already exists" not in _first_line(e):
                raise SiteError(self.name, f"code request failed: {_first_line(e)}") from None

    def request_status(self, function_name: str = "local_train") -> tuple[str, str]:
        """``("approved" | "pending" | "denied", reason)`` of the newest request for ``function_name``."""
        requests = [r for r in self.client.requests.get_all()
                    if getattr(r.code, "service_func_name", None) == function_name]
        if not requests:
            return "missing", "no code request on this datasite"
        request = max(requests, key=lambda r: r.request_time.utc_timestamp)
        status = request.status.name
        if status == "APPROVED":
            return "approved", ""
        if status == "REJECTED":
            return "denied", _deny_reason(request)
        return "pending", ""

    def wait_for_approval(self, timeout: float, function_name: str = "local_train") -> None:
        """Block until the request is approved; :class:`SiteError` if denied or still pending at ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            status, reason = self.request_status(function_name)
            if status == "approved":
                # Find the submitted code to call now, as set-up, rather than inside the first round.
                self._remote_function(function_name)
                return
            if status == "denied":
                raise SiteError(self.name, f"the data owner's policy denied the code request: {reason}")
            if status == "missing":
                raise SiteError(self.name, reason)
            if time.monotonic() > deadline:
                raise SiteError(self.name, f"code request still pending after {timeout:.0f} s "
                                           "(the data owner has not approved it)")
            time.sleep(0.5)

    def _remote_function(self, function_name: str) -> Any:
        """What to call for ``function_name``: for a training function of :mod:`fedsyft.task`, the code
        on this site whose source hash is this fedsyft's (whatever else holds the name); otherwise
        PySyft's endpoint of that name.
        """
        if function_name not in task.TRAINING_FUNCTIONS:
            return getattr(self.client.code, function_name)
        if function_name not in self._codes:
            sha, mine = training_code_sha256(function_name), self.client.verify_key
            codes = [c for c in self.client.code.get_all()
                     if c.service_func_name == function_name and c.user_verify_key == mine]
            match = [c for c in codes if source_sha256(c.raw_code) == sha]  # at most one: PySyft keeps one per text
            if not match:
                raise SiteError(self.name, _no_such_code(function_name, sha, codes))
            self._codes[function_name] = (match[0].id, match[0].signature)
        uid, signature = self._codes[function_name]
        # The endpoint PySyft's API would build for this one code (syft/client/api.py), by its id.
        from syft.client.api import generate_remote_function
        from syft.serde.signature import signature_remove

        api = self.client.api
        return generate_remote_function(api, api.server_uid, signature_remove(signature, ["context", "self"]),
                                        "code.call", api.make_call, pre_kwargs={"uid": uid},
                                        communication_protocol=api.communication_protocol, warning=None)

    def call(self, function_name: str, **kwargs: Any) -> Any:
        """Run an approved function on the private asset and return its result.

        A training function of :mod:`fedsyft.task` runs as the code whose source is this
        fedsyft's, the one the data owner's allowlist approves; :class:`SiteError` if the
        site holds no request for it.
        """
        try:
            pointer = self._remote_function(function_name)(data=self.asset, **kwargs)
            result = pointer.get() if hasattr(pointer, "get") else pointer
        except SiteError:
            raise
        except Exception as e:
            if _transport_error(e):
                raise SiteError(self.name, f"lost connection to {self.credentials.url}") from None
            raise SiteError(self.name, _first_line(e)) from None
        if type(result).__name__ == "SyftError":
            raise SiteError(self.name, str(getattr(result, "message", result)))
        return result

    def train(self, global_params: Params | None, config: dict[str, Any]) -> SiteResult:
        params = {k: np.asarray(v, dtype=np.float32) for k, v in (global_params or {}).items()}
        sent = payload_bytes(params, config)
        start = time.perf_counter()
        out = self.call(task.training_function_name(config), global_params=params, config=dict(config))
        return parse_output(self.name, out, time.perf_counter() - start, sent)

    def status(self, function_name: str) -> dict[str, Any]:
        """The site's status answer, through its approved training function (reads no data, spends nothing):
        its work limits (``limits``) and, on a private site, its ledger's summary (``privacy``)."""
        return self.call(function_name, global_params={}, config={"query": "status"})

    def privacy_query(self, query: dict[str, Any]) -> dict[str, Any]:
        """Ask the site's privacy guard (through the approved DP function; it reads no data)."""
        return self.call("local_train_dp", global_params={}, config=dict(query))

    def __repr__(self) -> str:
        return f"SyftSite({self.name!r}, {self.credentials.url!r})"


def _no_such_code(function_name: str, sha: str, others: list) -> str:
    """Why a training function cannot be called: no request for this fedsyft's version of it."""
    text = f"no code request for this fedsyft's {function_name} (code sha256 {sha[:16]}…) on this datasite"
    if others:
        def state(code: Any) -> str:
            try:
                status = code.status
                return "approved" if status.approved else "denied" if status.denied else "pending"
            except Exception:  # a status this PySyft version cannot resolve
                return "status unknown"

        versions = ", ".join(f"{source_sha256(c.raw_code)[:16]}… ({state(c)})" for c in others)
        text += f"; it holds only other versions of {function_name}: {versions}"
    return text + "; submit it first"


def _deny_reason(request: Any) -> str:
    """The reason a data owner gave when denying ``request``."""
    for read in (lambda: request.deny_reason, lambda: request.code.status.first_denial_reason):
        try:
            reason = read()
        except Exception:  # a status layout this PySyft version does not have
            continue
        if isinstance(reason, str) and reason:
            return reason
    return "no reason given"
