"""The researcher's side of a private run: "give me ε per site", and the DP-SGD settings that follow.

As Opacus's ``make_private_with_epsilon``: the researcher states the target ε (and the
run's shape), and the noise multiplier is derived so that the whole run, ``rounds``
calls of ``steps`` Poisson-sampled steps each, spends at most that ε at δ on each site.
Each site's guard then checks and charges every call itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .accountant import Mechanism, noise_multiplier_for

#: Defaults tuned on MNIST (2 sites x 30,000 rows, 20 rounds): see benchmarks/results.json.
DEFAULT_DELTA = 1e-5
DEFAULT_SAMPLE_RATE = 0.04
DEFAULT_STEPS = 50
DEFAULT_CLIP = 1.0
DEFAULT_LR = None  # derived from the noise: see PrivatePlan.step_size
#: Small sites get bigger sampling rates so that a step still averages about this many rows.
TARGET_BATCH_ROWS = 128
MIN_STEPS = 5


def sampling_for(rows: int | None, sample_rate: float | None = None, steps: int | None = None) -> tuple[float, int]:
    """DP-SGD's sampling rate and steps per round for sites whose smallest holds ``rows`` rows.

    The defaults (rate 0.04, 50 steps a round) suit MNIST's 30,000 rows a site, where a step
    averages 1,200 rows. On a site of a few hundred rows they would average about 10, and
    the noise, the same in absolute size, would swamp the gradient. So an unset rate is
    ``TARGET_BATCH_ROWS / rows`` kept within [0.04, 1], and unset steps keep the defaults'
    two passes over the rows a round: ``2 / rate``, within [5, 50]. Measured (20 rounds, ε = 1):
    breast cancer over 2 sites 0.71 -> 0.91, digits over 3 sites 0.59 -> 0.84 (benchmarks).

    Parameters
    ----------
    rows : the smallest site's row count (public: every call returns it); None: unknown, the defaults.
    sample_rate, steps : the researcher's own choice, kept when given.

    Returns
    -------
    (sample_rate, steps)
    """
    if rows is not None and rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if sample_rate is None:
        sample_rate = DEFAULT_SAMPLE_RATE if rows is None else min(1.0, max(DEFAULT_SAMPLE_RATE,
                                                                             TARGET_BATCH_ROWS / rows))
    if steps is None:
        passes = DEFAULT_STEPS * DEFAULT_SAMPLE_RATE  # 2 passes over the rows a round
        steps = int(min(DEFAULT_STEPS, max(MIN_STEPS, round(passes / sample_rate))))
    return float(sample_rate), int(steps)


def auto_step_size(noise_multiplier: float) -> float:
    """The default DP-SGD step size: 10/σ, kept within [0.5, 8].

    Less noise affords longer steps. Tuned on MNIST (2 x 30,000 rows, q = 0.04, 50 steps
    per round, 20 rounds): the best constant step was about 2 at ε = 1 (σ = 5.2) and
    about 8 at ε = 8 (σ = 1.1). Pass ``lr`` to choose your own.
    """
    return float(min(8.0, max(0.5, 10.0 / max(noise_multiplier, 1e-9))))


@dataclass(frozen=True)
class PrivatePlan:
    """DP-SGD settings of a private run; ``noise_multiplier`` is derived from the others.

    Parameters
    ----------
    epsilon : the ε this run may spend on each site (record-level, at ``delta``).
    delta : δ of the guarantee; a site accounts at its own δ, so use the sites' δ.
    rounds : calls each site will get (one per round).
    sample_rate : each row's probability of joining a step's batch (Poisson sampling).
    steps : noisy gradient steps per call.
    clip : per-example gradient norm bound C; the noise's standard deviation is σ·C.
    lr : step size of the site's local gradient descent (None: :func:`auto_step_size` times ``lr_factor``).
    l2 : L2 penalty on the coefficients (data-independent, free of privacy cost).
    lr_factor : scales the derived step size for features other than raw pixels (the public feature
        map's :attr:`~fedsyft.features.FeatureMap.dp_step_factor`); ignored when ``lr`` is given.
    """

    epsilon: float
    delta: float = DEFAULT_DELTA
    rounds: int = 20
    sample_rate: float = DEFAULT_SAMPLE_RATE
    steps: int = DEFAULT_STEPS
    clip: float = DEFAULT_CLIP
    lr: float | None = DEFAULT_LR
    l2: float = 0.0
    lr_factor: float = 1.0
    noise_multiplier: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if not self.clip > 0 or not (self.lr is None or self.lr > 0) or not self.l2 >= 0 or not self.lr_factor > 0:
            raise ValueError("clip, lr and lr_factor must be positive and l2 non-negative")
        sigma = noise_multiplier_for(self.epsilon, self.sample_rate, self.steps * self.rounds, self.delta)
        object.__setattr__(self, "noise_multiplier", sigma)

    @property
    def step_size(self) -> float:
        """The step size sent to the sites: ``lr``, or derived from the noise when ``lr`` is None."""
        return self.lr if self.lr is not None else auto_step_size(self.noise_multiplier) * self.lr_factor

    @property
    def mechanism(self) -> Mechanism:
        """One call's mechanism (what each site charges per round)."""
        return Mechanism(self.noise_multiplier, self.sample_rate, self.steps)

    def train_config(self) -> dict[str, Any]:
        """The config every site receives each round (``task.local_train_dp``'s keys)."""
        return {"noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate, "steps": self.steps,
                "clip": self.clip, "lr": self.step_size, "l2": self.l2}

    def plan_query(self, calls: int) -> dict[str, Any]:
        """Asks a site whether ``calls`` more calls of this plan fit its remaining budget."""
        return {"query": "plan", "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "steps": self.steps, "calls": int(calls)}

    def describe(self) -> dict[str, Any]:
        """Everything a report shows about the mechanism."""
        return {"epsilon": self.epsilon, "delta": self.delta, "rounds": self.rounds,
                "noise_multiplier": self.noise_multiplier, "clip": self.clip, "sample_rate": self.sample_rate,
                "steps_per_round": self.steps, "lr": self.step_size, "lr_auto": self.lr is None, "l2": self.l2,
                "accountant": "RDP (dp-accounting), add-or-remove-one record"}
