"""What every kind of site offers the federation loop, and what it returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..aggregate import Params
from ..history import WITHHELD_UNDER_DP, SiteRound

PARAM_KEYS = ("coef", "intercept")


class SiteError(RuntimeError):
    """A site could not produce a result this round (unreachable, denied, or failed)."""

    def __init__(self, site: str, reason: str):
        super().__init__(f"{site}: {reason}")
        self.site = site
        self.reason = reason


@dataclass(frozen=True)
class SiteResult:
    """A site's answer to one training call: new parameters, what it reported, and any strategy extras.

    ``extra`` holds what a strategy asked for beyond the model, e.g. SCAFFOLD's
    ``control_variate`` (parameter-shaped arrays).
    """

    params: Params
    report: SiteRound
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return self.report.n_train


class Site(Protocol):
    """A place that trains the global model on data the caller cannot see."""

    name: str

    def train(self, global_params: Params | None, config: dict[str, Any]) -> SiteResult:
        """Run one local round starting from ``global_params`` (None = fresh model)."""
        ...

    def privacy_query(self, query: dict[str, Any]) -> dict[str, Any]:
        """Ask a private site's guard about its budget (``{"query": "status"}`` or a plan); reads no data."""
        ...


def payload_bytes(params: Params | None, extra: dict[str, Any]) -> int:
    """Bytes of parameter arrays (also those nested in ``extra``) plus the JSON size of the other fields."""
    arrays = sum(np.asarray(v).nbytes for v in params.values()) if params else 0
    nested = []
    text = json.dumps(extra, default=lambda obj: _jsonable(obj, nested))
    return arrays + sum(nested) + len(text)


def _jsonable(obj: Any, nested: list[int]) -> Any:
    if isinstance(obj, np.ndarray):
        nested.append(obj.nbytes)
        return None
    return str(obj)


def parse_output(site: str, out: Any, seconds: float, bytes_sent: int) -> SiteResult:
    """Check what a training function returned and turn it into a :class:`SiteResult`.

    A private site's answer (``task.local_train_dp`` behind the site's privacy guard)
    carries no local metrics and a ``privacy`` report from the site's ledger; a
    non-private one carries the metrics of ``task.local_train``.

    Raises :class:`SiteError` with the site's own message when it reported an error
    (a refused call included), or when the answer is not of the expected shape.
    """
    if not isinstance(out, dict):
        raise SiteError(site, f"unexpected answer of type {type(out).__name__}")
    if "error" in out:
        raise SiteError(site, f"training failed on the datasite: {out['error']}")
    try:
        params = _checked_params(out)
        metrics = {k: out[k] for k in out if k not in PARAM_KEYS}
        common = dict(n_train=int(out["n_train"]), seconds=seconds, bytes_sent=bytes_sent,
                      bytes_received=payload_bytes(params, metrics))
        if "privacy" in out:
            privacy = out["privacy"]
            report = SiteRound(**common, train_accuracy=None, test_accuracy=None, train_loss=None, test_loss=None,
                               confusion_matrix=None, compute_seconds=None,
                               epsilon_spent=float(privacy["epsilon_spent"]),
                               epsilon_budget=float(privacy["epsilon_budget"]), delta=float(privacy["delta"]),
                               withheld=list(WITHHELD_UNDER_DP))
        else:
            cm = out["confusion_matrix"]
            report = SiteRound(
                **common,
                train_accuracy=float(out["train_accuracy"]), test_accuracy=float(out["test_accuracy"]),
                train_loss=float(out["train_loss"]), test_loss=float(out["test_loss"]),
                confusion_matrix=None if cm is None else np.asarray(cm).astype(int).tolist(),
                compute_seconds=float(out.get("compute_seconds", float("nan"))),
            )
    except (KeyError, TypeError, ValueError) as e:
        raise SiteError(site, f"malformed answer ({e})") from None
    if report.n_train <= 0:
        raise SiteError(site, "reported no training rows")
    extra = {}
    if "control_variate" in out:
        try:
            extra["control_variate"] = _checked_params(out["control_variate"])
        except (KeyError, TypeError, ValueError) as e:
            raise SiteError(site, f"malformed control variate ({e})") from None
    return SiteResult(params, report, extra)


def _checked_params(value: Any) -> Params:
    """coef [k, d] and intercept [k], finite (k classes, d features: whatever the federation's schema says)."""
    params = {k: np.asarray(value[k], dtype=np.float32) for k in PARAM_KEYS}
    coef, intercept = params["coef"], params["intercept"]
    if coef.ndim != 2 or intercept.shape != (coef.shape[0],):
        raise ValueError(f"coef must be [classes, features] and intercept [classes], got {coef.shape} and "
                         f"{intercept.shape}")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError("parameters must be finite")
    return params
