"""The gate installed around PySyft's code execution on every datasite: work limits, and privacy when private.

PySyft 0.9.5 runs approved code through one function, ``execute_byte_code``, once on
the private asset and once on its mock (the result "twin"). A datasite replaces that
function, inside its own process, with :func:`install`'s wrapper:

- every training call is measured against the owner's :class:`~fedsyft.limits.WorkLimits`
  before it runs, on the mock and on the private data alike: one over ``max_passes`` is
  refused with one line (and costs no budget); at most ``max_concurrent`` run on the
  private data at once, as many more wait up to ``queue_seconds``, and the rest are refused;
- status and plan questions (``{"query": ...}``) are answered at once and never wait;
- on a private datasite, only the allow-listed DP training function may run on the
  private data, even if some other code was approved by hand; each call first passes
  the site's :class:`~fedsyft.privacy.PrivacyGuard`, which charges the ledger durably or
  refuses; whatever the function printed stays on the site.

A refusal is returned as the call's result, ``{"error": ...}``, so the researcher sees
the reason (PySyft would replace an exception's text). Because the gate sits below
PySyft's API, it holds however the function is reached: another researcher account, a
resubmitted request, a direct API call.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

from ..limits import WorkLimits
from ..privacy.guard import PrivacyGuard


def data_digest(data: Any) -> str | None:
    """SHA-256 of an asset value ``(X, y)``: shapes, dtypes and bytes (None if it is not such a tuple)."""
    import numpy as np

    data = getattr(data, "syft_action_data", data)  # an ActionObject wraps the value
    if not isinstance(data, tuple | list) or len(data) != 2:
        return None
    h = hashlib.sha256()
    for part in data:
        a = np.ascontiguousarray(part)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.data)
    return h.hexdigest()


def _requester(context: Any) -> str:
    """The email of the account making the call (its key if the lookup fails)."""
    try:
        user = context.server.services.user.stash.get_by_verify_key(
            credentials=context.server.verify_key, verify_key=context.credentials).unwrap()
        return str(user.email)
    except Exception:
        return f"key:{str(context.credentials)[:16]}"


def _shapes(data: Any) -> tuple | None:
    data = getattr(data, "syft_action_data", data)
    if not isinstance(data, tuple | list) or len(data) != 2:
        return None
    return tuple(getattr(part, "shape", None) for part in data)


def mock_identity(mock: Any) -> dict:
    """What tells the asset's public mock from any other data: its shapes and digest (JSON-ready)."""
    shapes = _shapes(mock)
    return {"shapes": None if shapes is None else [None if s is None else list(s) for s in shapes],
            "digest": data_digest(mock)}


def install(limits: WorkLimits, mock: dict, record: Callable[[str, dict], None],
            guard: PrivacyGuard | None = None, dp_code_sha256: str | None = None) -> None:
    """Route every execution of user code in this process through the datasite's gate.

    ``mock`` is the :func:`mock_identity` of the asset's public mock: only an execution on exactly
    that data runs without a turn and, on a private site, free. ``record`` receives the gate's
    refusals for the audit log. ``guard`` and ``dp_code_sha256`` make the site private (both or neither).
    """
    shapes = mock["shapes"]
    mock_shapes = None if shapes is None else tuple(None if s is None else tuple(s) for s in shapes)
    mock_digest = mock["digest"]

    def is_mock(data: Any) -> bool:
        # Shapes first: the private data (usually of another row count) is not hashed on every call.
        return data is not None and _shapes(data) == mock_shapes and data_digest(data) == mock_digest
    import syft.service.action.action_service as action_service
    from syft.service.code.user_code import UserCodeExecutionOutput

    original = action_service.execute_byte_code
    running = threading.BoundedSemaphore(limits.max_concurrent)
    # Waiting calls hold one of the server's threads each (its pool has 40): a bound keeps a flood from taking them all.
    waiting = threading.BoundedSemaphore(max(8, 4 * limits.max_concurrent))

    def answer(code_item: Any, result: dict) -> Any:
        return UserCodeExecutionOutput(user_code_id=code_item.id, stdout="", stderr="", result=result)

    def refuse(code_item: Any, context: Any, reason: str) -> Any:
        record("limit_refused", {"requester": _requester(context), "function": code_item.service_func_name,
                                 "reason": reason})
        return answer(code_item, {"error": reason})

    def on_private_data(code_item: Any, kwargs: dict, context: Any, config: Any) -> Any:
        if guard is None:
            return original(code_item, kwargs, context)
        ran: dict[str, Any] = {}

        def train(prepared: dict) -> Any:  # the guard's config: with the site's public row count
            ran["output"] = original(code_item, {**kwargs, "config": prepared}, context)
            return ran["output"].result

        result = guard.run(config, train, requester=_requester(context))
        if "output" in ran:
            # Whatever the function printed while reading private rows stays on the site.
            ran["output"].result, ran["output"].stdout, ran["output"].stderr = result, "", ""
            return ran["output"]
        return answer(code_item, result)

    def guarded(code_item: Any, kwargs: dict, context: Any) -> Any:
        config = getattr(kwargs.get("config"), "syft_action_data", kwargs.get("config"))
        too_much = limits.refusal(config)
        if is_mock(kwargs.get("data")):  # the public mock: free, no turn to wait for
            return refuse(code_item, context, too_much) if too_much else original(code_item, kwargs, context)
        if guard is not None and hashlib.sha256(code_item.raw_code.encode()).hexdigest() != dp_code_sha256:
            guard.note("privacy_refused", requester=_requester(context), function=code_item.service_func_name,
                       reason="not the DP training function")
            return answer(code_item, {"error": "this datasite is private (differential privacy): only the "
                                               "allow-listed local_train_dp may read its data"})
        if isinstance(config, dict) and "query" in config:  # status and plan questions: at once, reading no data
            if config == {"query": "status"}:
                status = guard.run(config, lambda _: {}) if guard is not None else {}
                return answer(code_item, {**status, "limits": limits.to_dict()})
            if guard is not None:
                return answer(code_item, guard.run(config, lambda _: {"error": "not a query"}))
            return answer(code_item, {"error": "this datasite answers only {'query': 'status'}"})
        if too_much:
            return refuse(code_item, context, too_much)
        if not running.acquire(blocking=False):
            if not waiting.acquire(blocking=False):
                return refuse(code_item, context, f"refused: this datasite is busy ({limits.max_concurrent} calls "
                                                  "running and more waiting, max_concurrent); try again later")
            try:
                if not running.acquire(timeout=limits.queue_seconds):
                    return refuse(code_item, context, f"refused: this datasite stayed busy for "
                                                      f"{limits.queue_seconds:g} s (max_concurrent "
                                                      f"{limits.max_concurrent}); try again later")
            finally:
                waiting.release()
        try:
            return on_private_data(code_item, kwargs, context, config)
        finally:
            running.release()

    action_service.execute_byte_code = guarded
