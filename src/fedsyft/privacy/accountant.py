"""Privacy accounting for DP-SGD, done by Google's ``dp-accounting`` (its RDP accountant).

Nothing here is a hand-written bound: every ε comes from ``dp_accounting.rdp.RdpAccountant``
composing ``PoissonSampledDpEvent(q, GaussianDpEvent(σ))`` once per step, and the noise for
a target ε from ``dp_accounting.calibrate_dp_mechanism``.

The neighbouring relation is **add-or-remove-one record**, as DP-SGD's analysis assumes, and
it matches what a site releases: the function divides by the site's *public* row count and
returns it, never the exact one. Charges made by fedsyft before that (its answers carried
the exact count, so only replace-one neighbours were consistent with them) are accounted as
:data:`REPLACE_ONE`: one record replaced can move the clipped sum by 2·clip, and by joint
quasi-convexity of the Rényi divergence (van Erven and Harremoës 2014) a Poisson-sampled step
is then no worse than the plain Gaussian mechanism at σ/2 (no amplification by sampling is
claimed, so the bound only overstates).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from functools import cache, lru_cache


@cache
def _dp():
    """dp-accounting, imported on first use: its import costs ~0.6 s, which every ``fedsyft`` command
    (and the non-private datasite) would otherwise pay at start-up."""
    import dp_accounting
    import dp_accounting.rdp

    # For small σ the RDP accountant skips orders it cannot evaluate and logs a WARNING for
    # each (dozens per calibration); the bound stays valid, so keep them out of users' output.
    logging.getLogger("absl").setLevel(logging.ERROR)
    return dp_accounting


#: The neighbouring relation of every charge fedsyft makes now, and of the ε it reports.
ADD_OR_REMOVE = "add-or-remove-one"
#: The relation of charges made while answers carried the exact row count (fedsyft before 2026-12).
REPLACE_ONE = "replace-one"
RELATIONS = (ADD_OR_REMOVE, REPLACE_ONE)


@dataclass(frozen=True)
class Mechanism:
    """What one DP-SGD call executes: ``steps`` Poisson-sampled Gaussian steps.

    Parameters
    ----------
    noise_multiplier : σ, the Gaussian noise's standard deviation relative to the clip norm.
    sample_rate : q, each row's probability of being in a step's batch (Poisson sampling).
    steps : the number of noisy gradient steps.
    relation : :data:`ADD_OR_REMOVE` (what a site runs now) or :data:`REPLACE_ONE` (an earlier
        fedsyft's charge, accounted conservatively: see the module's docstring).
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    relation: str = ADD_OR_REMOVE

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ValueError(f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps}")
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")

    def event(self) -> "dp_accounting.DpEvent":  # noqa: F821
        """The ``dp-accounting`` event of this mechanism, under add-or-remove-one neighbours."""
        dp = _dp()
        if self.relation == REPLACE_ONE:  # sensitivity 2·clip, no amplification by sampling claimed
            return dp.SelfComposedDpEvent(dp.GaussianDpEvent(self.noise_multiplier / 2), int(self.steps))
        step = dp.PoissonSampledDpEvent(self.sample_rate, dp.GaussianDpEvent(self.noise_multiplier))
        return dp.SelfComposedDpEvent(step, int(self.steps))


def _composed(mechanisms: Iterable[Mechanism]) -> "dp_accounting.DpEvent":  # noqa: F821
    # Group equal (σ, q): RDP composes additively, so summing their steps is exact and
    # keeps a ledger of thousands of calls as cheap as one.
    steps = Counter()
    for m in mechanisms:
        steps[(m.noise_multiplier, m.sample_rate, m.relation)] += int(m.steps)
    return _dp().ComposedDpEvent([Mechanism(s, q, n, r).event() for (s, q, r), n in sorted(steps.items())])


def epsilon_spent(mechanisms: Iterable[Mechanism], delta: float) -> float:
    """ε at ``delta`` of running every mechanism in ``mechanisms`` on the same data (0 for none).

    ``inf`` when some mechanism adds no noise.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    mechanisms = list(mechanisms)
    if not mechanisms:
        return 0.0
    if any(m.noise_multiplier == 0 for m in mechanisms):
        return math.inf
    accountant = _dp().rdp.RdpAccountant()
    accountant.compose(_composed(mechanisms))
    return float(accountant.get_epsilon(delta))


@lru_cache(maxsize=64)  # a calibration takes 0.5-1.5 s; a run's config asks for the same plan more than once
def noise_multiplier_for(target_epsilon: float, sample_rate: float, steps: int, delta: float) -> float:
    """The smallest σ such that ``steps`` steps at ``sample_rate`` spend at most ``target_epsilon`` at ``delta``.

    The ``make_private_with_epsilon`` of Opacus, with dp-accounting's calibration (Brent's method).
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {target_epsilon}")
    Mechanism(1.0, sample_rate, steps)  # validates q and steps
    dp = _dp()
    sigma = dp.calibrate_dp_mechanism(
        dp.rdp.RdpAccountant, lambda s: Mechanism(s, sample_rate, steps).event(), target_epsilon, delta,
        bracket_interval=dp.LowerEndpointAndGuess(0.05, 1.0), tol=1e-4)
    # The calibration is within tol of the optimum, on either side: step up until it fits.
    while epsilon_spent([Mechanism(sigma, sample_rate, steps)], delta) > target_epsilon:
        sigma += 1e-4
    return float(sigma)
