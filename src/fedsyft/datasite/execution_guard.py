"""The privacy guard installed around PySyft's code execution on a private datasite.

PySyft 0.9.5 runs approved code through one function, ``execute_byte_code``, once on
the private asset and once on its mock (the result "twin"). A private datasite
replaces that function, inside its own process, with :func:`install`'s wrapper:

- on the public mock, code runs as before and nothing is charged;
- on anything else (the private data), only the allow-listed DP training function may
  run, even if some other code was approved by hand; each call first passes the
  site's :class:`~fedsyft.privacy.PrivacyGuard`, which charges the ledger durably or
  refuses. A refusal is returned as the call's result, ``{"error": ...}``, so the
  researcher sees the reason (PySyft would replace an exception's text).

Because the check sits below PySyft's API, it holds however the function is reached:
another researcher account, a resubmitted request, a direct API call.
"""

from __future__ import annotations

import hashlib
from typing import Any

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


def install(guard: PrivacyGuard, dp_code_sha256: str, mock: Any) -> None:
    """Route every execution of user code in this process through ``guard`` (private datasites only).

    ``mock`` is the asset's public mock: only an execution on exactly that data runs free.
    """
    mock_shapes, mock_digest = _shapes(mock), data_digest(mock)

    def is_mock(data: Any) -> bool:
        # Shapes first: the private data (usually of another row count) is not hashed on every call.
        return data is not None and _shapes(data) == mock_shapes and data_digest(data) == mock_digest
    import syft.service.action.action_service as action_service
    from syft.service.code.user_code import UserCodeExecutionOutput

    original = action_service.execute_byte_code

    def answer(code_item: Any, result: dict) -> Any:
        return UserCodeExecutionOutput(user_code_id=code_item.id, stdout="", stderr="", result=result)

    def guarded(code_item: Any, kwargs: dict, context: Any) -> Any:
        if is_mock(kwargs.get("data")):
            return original(code_item, kwargs, context)  # the public mock: free
        if hashlib.sha256(code_item.raw_code.encode()).hexdigest() != dp_code_sha256:
            guard.note("privacy_refused", requester=_requester(context), function=code_item.service_func_name,
                       reason="not the DP training function")
            return answer(code_item, {"error": "this datasite is private (differential privacy): only the "
                                               "allow-listed local_train_dp may read its data"})
        ran: dict[str, Any] = {}

        def train(prepared: dict) -> Any:  # the guard's config: with the site's public row count
            ran["output"] = original(code_item, {**kwargs, "config": prepared}, context)
            return ran["output"].result

        config = getattr(kwargs.get("config"), "syft_action_data", kwargs.get("config"))
        result = guard.run(config, train, requester=_requester(context))
        if "output" in ran:
            # Whatever the function printed while reading private rows stays on the site.
            ran["output"].result, ran["output"].stdout, ran["output"].stderr = result, "", ""
            return ran["output"]
        return answer(code_item, result)

    action_service.execute_byte_code = guarded
