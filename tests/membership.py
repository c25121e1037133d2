"""A curious researcher's membership attack on ``local_train_dp``: a float32 overflow it tunes per candidate image.

The researcher may choose the feature scaling and any finite float32 global parameters.
With ``scale`` low 127 / high 128 on every pixel, each pixel becomes the bit "brighter
than 127". For a candidate image whose k pixels are bright, class 0's coefficients are
FLT_MAX / (k - 0.5) on those k pixels and 0 elsewhere. A row lighting m of them has the
logit m * FLT_MAX / (k - 0.5): finite for m < k, beyond float32's range (inf) for m = k.
So the logits overflow exactly when some private row lights every bright pixel of the
candidate (the candidate itself does), and one such row turns the released model into
NaN, or makes the call otherwise behave differently. A noise multiplier of 10,000 with
one step makes each call almost free: no noise covers whether the answer is finite.

The researcher compares *kinds* of answers, not values: an answer with NaN/inf, an
error, or an error with other text than an outsider's gives the candidate away,
whatever the noise on the numbers. A candidate is flagged as a member when its
answer's kind differs from the kind most outsiders' answers have. A hardened function
must give every candidate an answer of the same kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

FLT_MAX = float(np.finfo(np.float32).max)
#: Each pixel becomes 1 when brighter than 127, else 0 (the researcher's "public scaling").
SCALE = {"low": [127.0] * 784, "high": [128.0] * 784}
#: Almost free per call: huge noise, one full-batch step (the answer's kind does not care about noise).
CONFIG = {"noise_multiplier": 1e4, "sample_rate": 1.0, "steps": 1, "clip": 1.0, "lr": 1.0, "l2": 0.0}


#: The hardened function's public bound on a parameter: the largest template it accepts.
BOUND = 1e4


def probe(candidate: np.ndarray, edge: float = FLT_MAX) -> tuple[dict, dict]:
    """Global parameters and config whose logits overflow iff a row lights all of ``candidate``'s bright pixels.

    ``edge`` scales the template: FLT_MAX / (k - 0.5) on each bright pixel by default; with
    ``edge=BOUND * (k - 0.5)`` every coefficient sits exactly at the hardened function's bound.
    """
    bright = np.asarray(candidate).reshape(-1) >= 128
    k = int(bright.sum())
    coef = np.zeros((10, bright.size), np.float32)
    coef[0, bright] = np.float32(edge / (k - 0.5))  # finite: passes the "no NaN or inf" check
    return {"coef": coef, "intercept": np.zeros(10, np.float32)}, {**CONFIG, "scale": SCALE}


def kind(answer: Any) -> str:
    """What the attack reads from an answer: finite or not, or which error (never the noisy values)."""
    if isinstance(answer, BaseException):
        return f"raised {type(answer).__name__}: {answer}"
    if not isinstance(answer, dict):
        return f"not a dict: {type(answer).__name__}"
    if "error" in answer:
        return f"error: {answer['error']}"
    arrays = [np.asarray(answer[key], np.float64) for key in ("coef", "intercept") if key in answer]
    finite = bool(arrays) and all(np.isfinite(a).all() for a in arrays)
    keys = sorted(set(answer) - {"privacy"})  # the privacy report (call id, ε so far) differs on every call
    return f"{'finite' if finite else 'non-finite'} {keys}"


def membership_attack(call: Callable[[dict, dict], dict], members: np.ndarray, outsiders: np.ndarray,
                      at_bound: bool = False) -> tuple[int, int, list[Any]]:
    """One call per candidate image (uint8 pixels, members first); returns (flagged members, flagged outsiders,
    answers). An exception a call raises counts as its answer. ``at_bound``: templates at the largest
    coefficient the hardened function accepts, instead of float32's overflow edge."""
    answers: list[Any] = []
    for candidate in [*members, *outsiders]:
        k = int((np.asarray(candidate) >= 128).sum())
        params, config = probe(candidate, BOUND * (k - 0.5)) if at_bound else probe(candidate)
        try:
            answers.append(call(params, config))
        except Exception as e:  # e.g. a SiteError: how the call failed is an answer too
            answers.append(e)
    kinds = [kind(a) for a in answers]
    normal = Counter(kinds[len(members):]).most_common(1)[0][0]  # what an outsider's answer looks like
    flagged = [k != normal for k in kinds]
    return sum(flagged[:len(members)]), sum(flagged[len(members):]), answers
