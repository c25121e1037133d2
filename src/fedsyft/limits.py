"""How much work one call may make a datasite do, and how many calls it runs at once: the owner's limits.

The researcher controls every setting of the approved training function. Within the
function's own bounds, one call could tie up a core for half an hour (10,000 full-batch
DP-SGD steps, or 1,000 L-BFGS iterations on 30,000 rows), and a datasite serves calls
concurrently. So each datasite has owner-set limits, kept in its state, published in its
status answer, and checked before any row is read:

- ``max_passes``: the most passes over the site's rows one call may make. A DP-SGD call
  makes ``steps * sample_rate`` (each step reads a Poisson sample of rate q); an L-BFGS
  call about ``local_iters`` (one gradient over every row per iteration).
- ``max_concurrent``: how many training calls run at once; more wait their turn for up to
  ``queue_seconds``, then are refused (as is a call that finds 8, or 4 x max_concurrent, already
  waiting). Status and plan questions never wait.

Both sides use this module: the datasite to refuse, the researcher to check its plan
before round 1 (so a run never fails in round 7 because of a limit).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

#: Defaults, generous for real plans: the default private plan makes 2 passes a call (5 on sites
#: under 128 rows), the default non-private one 25 iterations; 100 passes on 30,000 MNIST rows take
#: about 16 s of one core. Today's maxima (10,000 passes, 1,000 iterations) are far above.
DEFAULT_MAX_PASSES = 100.0
DEFAULT_MAX_CONCURRENT = 2
DEFAULT_QUEUE_SECONDS = 120.0


class LimitRefusal(ValueError):
    """A call, or a plan, asks for more work than a datasite's owner allows."""


@dataclass(frozen=True)
class WorkLimits:
    """A datasite's limits on the work of one call and on calls at once.

    Parameters
    ----------
    max_passes : the most passes over the rows one training call may make (> 0).
    max_concurrent : training calls that run at once (>= 1); more wait.
    queue_seconds : how long a call beyond ``max_concurrent`` waits before it is refused (>= 0).
    """

    max_passes: float = DEFAULT_MAX_PASSES
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    queue_seconds: float = DEFAULT_QUEUE_SECONDS

    def __post_init__(self) -> None:
        if not (isinstance(self.max_passes, int | float) and math.isfinite(self.max_passes) and self.max_passes > 0):
            raise ValueError(f"max_passes must be a positive number, got {self.max_passes!r}")
        if not (isinstance(self.max_concurrent, int) and self.max_concurrent >= 1):
            raise ValueError(f"max_concurrent must be an integer of at least 1, got {self.max_concurrent!r}")
        if not (isinstance(self.queue_seconds, int | float) and 0 <= self.queue_seconds < math.inf):
            raise ValueError(f"queue_seconds must be a number of at least 0, got {self.queue_seconds!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> WorkLimits:
        """Limits from a site's state or status (None or missing keys: the defaults); unknown keys are refused."""
        d = dict(d or {})
        unknown = set(d) - {"max_passes", "max_concurrent", "queue_seconds"}
        if unknown:
            raise ValueError(f"unknown work limit(s) {sorted(unknown)}")
        return cls(**d)

    def refusal(self, config: Any) -> str | None:
        """The one-line refusal of a training call's ``config`` that asks for too much work (None: it fits).

        Depends on the config and these limits only, never on the data.
        """
        work = passes(config)
        if work is None or work <= self.max_passes:
            return None
        return (f"refused: this call asks for {work:g} passes over the data; this datasite's owner allows at "
                f"most {self.max_passes:g} per call (max_passes)")


def passes(config: Any) -> float | None:
    """Passes over the rows a training config makes: DP-SGD ``steps * sample_rate``, L-BFGS ``local_iters``.

    None when the config is not a training call this module can read (a status question, or
    a malformed config, which the training function itself refuses without reading rows).
    """
    if not isinstance(config, dict) or "query" in config:
        return None
    try:
        if "noise_multiplier" in config:
            return float(config["steps"]) * float(config["sample_rate"])
        return float(config["local_iters"])
    except (KeyError, TypeError, ValueError):
        return None


def plan_refusal(site: str, limits: dict | None, config: dict) -> str | None:
    """Why a site's published limits refuse a run's per-round ``config`` (None: it fits): checked before round 1."""
    if limits is None:
        return None
    reason = WorkLimits.from_dict(limits).refusal(config)
    if reason is None:
        return None
    setting = "dp_steps x sample_rate" if "noise_multiplier" in config else "local_iters"
    return f"{site}: {reason.removeprefix('refused: ')}; lower {setting}"
