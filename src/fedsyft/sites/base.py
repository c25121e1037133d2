"""What every kind of site offers the federation loop, and what it returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..aggregate import Params
from ..history import WITHHELD_UNDER_DP, SiteRound

PARAM_SHAPES = {"coef": (10, 784), "intercept": (10,)}


class SiteError(RuntimeError):
    """A site could not produce a result this round (unreachable, denied, or failed)."""

    def __init__(self, site: str, reason: str):
        super().__init__(f"{site}: {reason}")
        self.site = site
        self.reason = reason


@dataclass(frozen=True)
class SiteResult:
    """A site's answer to one training call: new parameters and what it reported."""

    params: Params
    report: SiteRound

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
    """Bytes of parameter arrays plus the JSON size of the other fields: what the round's payload carries."""
    arrays = sum(np.asarray(v).nbytes for v in params.values()) if params else 0
    return arrays + len(json.dumps(extra, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    return obj.tolist() if isinstance(obj, np.ndarray) else str(obj)


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
        params = {k: np.asarray(out[k], dtype=np.float32) for k in PARAM_SHAPES}
        for k, shape in PARAM_SHAPES.items():
            if params[k].shape != shape or not np.isfinite(params[k]).all():
                raise ValueError(f"{k} must be finite with shape {shape}, got {params[k].shape}")
        metrics = {k: out[k] for k in out if k not in PARAM_SHAPES}
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
    return SiteResult(params, report)
