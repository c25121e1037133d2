"""A researcher's run from start to finish: connect, get approval, federate, write the run directory.

Used by ``fedsyft run``, ``demo`` and ``simulate`` and by the Python API.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import task
from .connection import SiteCredentials
from .data import Images
from .errors import ParameterError, param
from .federation import FederationResult, RoundObserver, federate
from .history import GlobalEval, History
from .privacy.plan import DEFAULT_CLIP, DEFAULT_DELTA, DEFAULT_LR, PrivatePlan, sampling_for
from .run_dir import RunDirectory, load_checkpoint
from .sites.base import Site, SiteError
from .strategies.options import OPTIONS, STRATEGY, StrategySettings, option, sites_per_round


@dataclass
class RunConfig(StrategySettings):
    """Settings of one federated run.

    Parameters
    ----------
    rounds : FedAvg rounds.
    seed : seeds the sites' local train/test splits (and, in simulations, the partition).
    l2 : L2 strength per mean sample loss, the same on every site (scikit-learn's
        C = 1 / (l2 * n_train) on each site), so the federation approximates one
        centralized fit with this ``l2`` however many sites there are.
    test_fraction : share of each site's rows kept for its local test metrics.
    epsilon : train privately: the ε (at ``delta``) this run may spend on each site.
        The sites then run DP-SGD (``task.local_train_dp``) with a noise multiplier
        derived from ``epsilon``, ``rounds``, ``dp_steps`` and ``sample_rate``, and
        release only noised parameters. None: the non-private ``task.local_train``.
    delta, sample_rate, dp_steps, clip, dp_lr : DP-SGD's δ, Poisson sampling rate,
        steps per round, per-example clip norm and step size (see
        :class:`fedsyft.privacy.PrivatePlan`); ``l2`` applies to both kinds of training.
        ``sample_rate`` and ``dp_steps`` left None follow the smallest site's size
        (:func:`fedsyft.privacy.plan.sampling_for`): MNIST's 0.04 and 50 on large sites.
    site_rows : the smallest site's row count for those defaults; None until the sites
        are known (:func:`resolve_site_rows` asks them), and then MNIST's defaults.
    strategy : the researcher's algorithm, a name of :data:`fedsyft.strategies.STRATEGIES`.
    clients_per_round, weighted, ema, mu, server_lr, server_momentum, beta1, beta2, tau, local_iters :
        the strategy options, keyword-only, one field per declaration in
        :data:`fedsyft.strategies.options.OPTIONS` (which says which strategies take each,
        its range and its default). None: the strategy's default; :meth:`setting` gives
        the value in effect. ``local_iters`` is the L-BFGS iterations each site runs per
        round (non-private training), with a default per strategy (FedAvg: 25 with up to 3
        sites a round, 5 with more).
    site_count : how many sites the run federates, on which the number of sites a round
        (:attr:`sites_per_round`), and so FedAvg's default ``local_iters``, depend; None until
        the sites are known (:func:`run_experiment` counts them).
    features : the public feature map the sites' images went through, as the federation declares
        it (:meth:`fedsyft.features.FeatureMap.to_dict`); the researcher maps its test set the same
        way. None: raw pixels. On mapped features DP-SGD's default step is the map's
        :attr:`~fedsyft.features.FeatureMap.dp_step_factor` times longer.
    center : centre the features the sites' training sees on the mean of the researcher's own
        test set (after the map and the schema's scaling): sent to the sites as the public
        ``center``; both training functions answer in the usual form. No owner's row is read for
        it, and under DP the sensitivity does not depend on it: a poor centre costs accuracy, never
        privacy. None: centre when a feature map is declared and a test set is there. The server
        optimizers (FedAvgM, FedAdam, FedYogi) then step in the same centred coordinates.
    schema : the federation's public data contract (:meth:`fedsyft.schema.Schema.to_dict`)
        for a tabular federation: the sites scale features with its ranges and train one
        class per schema class. None: MNIST (784 pixels / 255, 10 classes).
    """

    rounds: int = 5
    seed: int = task.DEFAULT_TRAIN_CONFIG["seed"]
    l2: float = task.DEFAULT_TRAIN_CONFIG["l2"]
    test_fraction: float = task.DEFAULT_TRAIN_CONFIG["test_fraction"]
    epsilon: float | None = None
    delta: float = DEFAULT_DELTA
    sample_rate: float | None = None
    dp_steps: int | None = None
    clip: float = DEFAULT_CLIP
    dp_lr: float | None = DEFAULT_LR
    strategy: str = "fedavg"
    schema: dict | None = None
    site_rows: int | None = None
    features: dict | None = None
    center: bool | None = None
    site_count: int | None = None

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if not self.l2 > 0:
            raise ValueError(f"l2 must be positive, got {self.l2}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")
        if self.site_count is not None and not (isinstance(self.site_count, int) and self.site_count >= 1):
            raise ValueError(f"site_count must be a count of sites (1, 2, ...), got {self.site_count!r}")
        self._plan = None
        self.plan  # validates the privacy settings early
        self.feature_map  # and the feature map's declaration
        self.make_strategy()  # and the strategy's
        self.setting("local_iters")

    def make_strategy(self):
        """A fresh :class:`~fedsyft.strategies.Strategy` for this run's settings (never None)."""
        from .strategies import make_strategy

        return make_strategy(self.strategy, seed=self.seed,
                             **{o.name: getattr(self, o.name) for o in OPTIONS if o.kind == STRATEGY})

    def setting(self, name: str):
        """Strategy option ``name`` in effect: as given, or the strategy's default (None if it takes none).

        A default may depend on the strategy, on whether ``clients_per_round`` samples the sites,
        on how many sites train a round (:attr:`sites_per_round`), and for ``local_iters`` on the
        feature map when its features are centred (:attr:`~fedsyft.features.FeatureMap.max_default_local_iters`).
        """
        o = option(name)
        if not o.applies_to(self.strategy_name):
            return None
        value = o.resolve(getattr(self, name), self.strategy_name, sampled=self.clients_per_round is not None,
                          per_round=self.sites_per_round)
        # The map's cap holds on its centred features (the default with a map; uncentred, L-BFGS needs more).
        capped = name == "local_iters" and self.feature_map and self.center is not False
        cap = self.feature_map.max_default_local_iters if capped else None
        return min(value, cap) if cap is not None and getattr(self, name) is None else value

    @property
    def strategy_name(self) -> str:
        """The strategy's name (``strategy`` may be given as an enum member)."""
        return str(getattr(self.strategy, "value", self.strategy))

    @property
    def sites_per_round(self) -> int | None:
        """How many sites train each round: all ``site_count``, or ``clients_per_round`` of them (None: not known)."""
        return None if self.site_count is None else sites_per_round(self.clients_per_round, self.site_count)

    @property
    def feature_map(self):
        """The :class:`~fedsyft.features.FeatureMap` of ``features`` (None: raw pixels)."""
        if self.features is None:
            return None
        from .features import FeatureMap

        fm = FeatureMap.from_dict(self.features)
        return None if fm.name == "none" else fm

    @property
    def private(self) -> bool:
        return self.epsilon is not None

    @property
    def plan(self) -> PrivatePlan | None:
        """The DP-SGD plan (noise multiplier derived from ε), or None for a non-private run."""
        if self.epsilon is None:
            return None
        sample_rate, steps = sampling_for(self.site_rows, self.sample_rate, self.dp_steps)
        factor = self.feature_map.dp_step_factor if self.feature_map is not None else 1.0
        key = (self.epsilon, self.delta, self.rounds, sample_rate, steps, self.clip, self.dp_lr, self.l2, factor)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, PrivatePlan(epsilon=self.epsilon, delta=self.delta, rounds=self.rounds,
                                           sample_rate=sample_rate, steps=steps, clip=self.clip,
                                           lr=self.dp_lr, l2=self.l2, lr_factor=factor))
        return self._plan[1]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The settings stored in a run's config (other keys, such as the site names, are ignored).

        A strategy option stored as None takes the value the run recorded in effect
        (``strategy_settings``), so a run resumes with the settings it had, even where a
        default has changed since.
        """
        given = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        recorded = d.get("strategy_settings") or {}
        if recorded:
            recorded = {"ema": 0.0, **recorded}  # Strategy.describe leaves ema out when it is off
        for o in OPTIONS:
            if given.get(o.name) is None and recorded.get(o.name) is not None:
                given[o.name] = recorded[o.name]
        if "center" not in d:
            given["center"] = False  # recorded before centring existed: it resumes uncentred, as it ran
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded in metrics.json's ``config``, with the strategy's in effect (``strategy_settings``).

        ``local_iters`` and ``weighted`` are recorded as in effect, as they always were (and so a
        resumed run keeps the ``local_iters`` it ran with: :meth:`from_dict` reads it as given).
        """
        own = [f.name for f in fields(self) if "option" not in f.metadata]
        d = {name: getattr(self, name) for name in own}
        d.update({o.name: getattr(self, o.name) for o in OPTIONS})
        d["local_iters"], d["weighted"] = self.setting("local_iters"), self.setting("weighted")
        d["strategy_settings"] = self.make_strategy().describe()
        if self.private:
            d["privacy"] = self.plan.describe()
        return d

    def train_config(self) -> dict[str, Any]:
        """The config every site receives each round (plus the public schema's keys for a tabular federation)."""
        if self.private:
            config = self.plan.train_config()
        else:
            config = {"seed": self.seed, "test_fraction": self.test_fraction,
                      "local_iters": self.setting("local_iters"), "l2": self.l2}
        if self.schema is not None:
            from .schema import Schema

            schema = Schema.from_dict(self.schema)
            low, high = (np.asarray(b, np.float32).tolist() for b in zip(*schema.ranges))
            config.update(n_classes=len(schema.classes), scale={"low": low, "high": high})
        return config

    @property
    def function_name(self) -> str:
        """The training function the sites must approve for this run."""
        return "local_train_dp" if self.private else "local_train"


def default_run_dir(root: Path = Path("runs")) -> Path:
    return root / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def evaluator(test: Images | None, schema: dict | None = None):
    """The researcher's scoring function: the global model on its own test set.

    ``test`` holds raw features and class indices; they are scaled once, as the sites
    scale theirs (by the schema's ranges, or MNIST's / 255). None: the researcher has no
    test set, the global model is not scored, and only what the sites release is reported.
    """
    if test is None:
        return lambda params: GlobalEval(test_accuracy=None, test_loss=None, confusion_matrix=None)
    X = scaled_features(test, schema)

    def evaluate(params) -> GlobalEval:
        return GlobalEval(**task.evaluate(params, X, test.y, scaled=True))

    return evaluate


def scaled_features(images: Images, schema: dict | None = None) -> np.ndarray:
    """``images``' features scaled as the sites scale theirs: by the schema's ranges, or / 255 (float32)."""
    if schema is not None:
        from .schema import Schema

        return Schema.from_dict(schema).scale(images.X)
    return np.asarray(images.X, dtype=np.float32) / np.float32(255)


def feature_center(test: Images | None, config: RunConfig) -> list[float] | None:
    """The public centre a run sends its sites (``RunConfig.center``), or None.

    The mean of the researcher's own test features, scaled as the sites scale theirs and
    rounded to the 1/255 grid the sites' DP-SGD works on. Raises ValueError when ``center``
    is True and there is no test set to take it from.
    """
    if config.center is False:
        return None
    if test is None:
        if config.center:
            raise ParameterError(f"{param('center')} needs the researcher's test set: the centre is its mean")
        return None
    # By default only on a feature map (raw pixels centred: ε = 1 0.9116 against 0.9100, not worth a default).
    if config.center is None and config.feature_map is None:
        return None
    mean = scaled_features(test, config.schema).mean(axis=0, dtype=np.float64)
    return (np.rint(np.clip(mean, 0, 1) * 255) / 255).tolist()


def run_experiment(
    sites: Sequence[Site],
    config: RunConfig,
    test: Images | None,
    out_dir: Path | None,
    *,
    observers: Sequence[RoundObserver] = (),
    extra: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    min_sites: int | None = None,
    site_timeout: float | None = None,
    resume: bool = False,
    max_workers: int | None = None,
) -> FederationResult:
    """Federate over ``sites`` and write the run directory (metrics.json and model.npz after every round).

    Parameters
    ----------
    sites, config, test : the sites, the run's settings, the researcher's test set (None: not scored).
        ``config.site_count`` becomes the number of ``sites``: some defaults depend on it.
    out_dir : the run directory (None: write nothing).
    observers : progress displays; see :class:`fedsyft.federation.RoundObserver`.
    extra : merged into the recorded config (e.g. the kind of sites).
    timings : seconds of set-up steps, stored under ``timings`` in metrics.json.
    min_sites, site_timeout, max_workers : the quorum, per-call timeout and calls in flight;
        see :func:`fedsyft.federate`.
    resume : continue the run in ``out_dir`` from its last finished round. Every round
        is checkpointed there (checkpoint.npz: global parameters and history in one file);
        nothing random happens on the researcher's side, so a resumed run ends with
        the same parameters as one that was never interrupted.
    """
    # counted (public: they are the run's sites), then asked their size if a private run's sampling needs it
    config = resolve_site_rows(sites, replace(config, site_count=len(sites)))
    center = feature_center(test, config)
    config = replace(config, center=center is not None)  # recorded as in effect: a resumed run centres as it did
    history = History(config={**config.to_dict(), "sites": [s.name for s in sites], **(extra or {})},
                      timings=dict(timings or {}))
    params = None
    strategy = config.make_strategy()
    if resume:
        if out_dir is None:
            raise ValueError("resuming needs the run directory")
        history, params, state = _checkpoint(Path(out_dir), history)
        strategy.load_state_dict(state)
        if config.private:
            _restore_simulated_spending(sites, history, config.train_config())
    check_work_limits(sites, config)  # each call must fit every site's limits: a run never fails in round 7 on them
    if config.private:  # every site must accept the whole (remaining) plan before any data is touched
        check_privacy_plan(sites, config.plan, calls=config.rounds - len(history.rounds))
    run_dir = RunDirectory(out_dir, history, strategy) if out_dir is not None else None
    all_observers = [*observers, *([run_dir] if run_dir else [])]
    try:
        train_config = config.train_config() | ({"center": center} if center is not None else {})
        return federate(sites, config.rounds, train_config, evaluator(test, config.schema), history=history,
                        strategy=strategy, observers=all_observers, min_sites=min_sites,
                        site_timeout=site_timeout, params=params, max_workers=max_workers)
    finally:
        if run_dir is not None:
            run_dir.finish()


def _checkpoint(run_dir: Path, fresh: History) -> tuple[History, Any, dict]:
    """The history, global parameters and strategy state saved in ``run_dir``, checked against this run's config."""
    saved, params, state = load_checkpoint(run_dir)
    for key in ("seed", "local_iters", "l2", "test_fraction", "weighted", "sites", "epsilon", "delta", "sample_rate",
                "dp_steps", "site_rows", "clip", "dp_lr", "strategy", "strategy_settings", "features", "center"):
        if key in saved.config and saved.config.get(key) != fresh.config.get(key):
            raise ValueError(f"cannot resume {run_dir}: its {key} is {saved.config.get(key)!r}, "
                             f"this run's is {fresh.config.get(key)!r}")
    if len(saved.rounds) >= fresh.config["rounds"]:
        raise ValueError(f"nothing to do: {run_dir} already has all {len(saved.rounds)} rounds")
    saved.config["rounds"] = fresh.config["rounds"]
    saved.timings = {**saved.timings, **{f"resume_{k}": v for k, v in fresh.timings.items()}}
    return saved, params, state


def _restore_simulated_spending(sites: Sequence[Site], history: History, train_config: dict) -> None:
    """Recharge simulated sites' in-memory ledgers for the calls they answered before the resume."""
    answered = Counter(name for record in history.rounds for name in record.sites)
    for site in sites:
        restore = getattr(site, "restore_spending", None)  # only in-process sites have one
        if restore is not None:
            restore(train_config, answered[site.name])


def connect_sites(credentials: Sequence[SiteCredentials]) -> list:
    """Log in to every datasite in parallel; raises the first :class:`SiteError`."""
    from .sites.syft_site import SyftSite

    with ThreadPoolExecutor(max_workers=max(1, len(credentials))) as pool:
        futures = [pool.submit(SyftSite.connect, c) for c in credentials]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        raise failed[0]
    return [f.result() for f in futures]


def request_approval(sites: Sequence, timeout: float, function_name: str = "local_train") -> None:
    """Submit a training function (``local_train`` or ``local_train_dp``) to every site; wait for all approvals."""
    for site in sites:
        site.submit(name=function_name)
    with ThreadPoolExecutor(max_workers=max(1, len(sites))) as pool:
        errors = [e for e in pool.map(lambda s: _error_of(s.wait_for_approval, timeout, function_name), sites) if e]
    if errors:
        raise errors[0]


def resolve_site_rows(sites: Sequence[Site], config: RunConfig) -> RunConfig:
    """``config`` with ``site_rows`` from the sites, when a private run leaves its sampling to their size.

    Asks each site's privacy guard for its status, which includes the row count (public:
    every call returns it). A site that does not say (an older datasite) leaves the
    defaults in place. Reads no data and spends nothing.
    """
    if not config.private or config.site_rows is not None or None not in (config.sample_rate, config.dp_steps):
        return config
    with ThreadPoolExecutor(max_workers=max(1, len(sites))) as pool:
        answers = list(pool.map(_status_rows, sites))
    if not answers or None in answers:
        return config
    return replace(config, site_rows=min(answers))


def _status_rows(site: Site) -> int | None:
    try:
        answer = site.privacy_query({"query": "status"})
    except SiteError:
        return None
    rows = answer.get("privacy", {}).get("rows") if isinstance(answer, dict) else None
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None


def check_work_limits(sites: Sequence[Site], config: RunConfig) -> None:
    """Check one round's call against every site's published work limits; :class:`SiteError` names the first
    site that would refuse it and the setting to lower. Sites that publish no limits (in-process ones, an
    earlier fedsyft's datasites) are not asked to keep any."""
    from .limits import plan_refusal

    train_config = config.train_config()

    def limits_of(site: Site) -> dict | None:
        status = getattr(site, "status", None)
        if status is None:
            return None
        try:
            answer = status(config.function_name)
        except SiteError:
            return None  # an older datasite that cannot answer: its own refusals still hold
        return answer.get("limits") if isinstance(answer, dict) else None

    with ThreadPoolExecutor(max_workers=max(1, len(sites))) as pool:
        published = list(pool.map(limits_of, sites))
    for site, limits in zip(sites, published):
        reason = plan_refusal(site.name, limits, train_config)
        if reason is not None:
            raise SiteError(site.name, reason.removeprefix(f"{site.name}: "))


def check_privacy_plan(sites: Sequence[Site], plan: PrivatePlan, calls: int) -> dict[str, dict]:
    """Ask every site whether ``calls`` more calls of ``plan`` fit its remaining budget; reads no data.

    Returns each site's ledger summary; raises :class:`SiteError` naming the remaining ε
    of the first site that refuses (or cannot answer).
    """
    with ThreadPoolExecutor(max_workers=max(1, len(sites))) as pool:
        answers = list(pool.map(lambda s: _plan_answer(s, plan, calls), sites))
    for site, answer in zip(sites, answers):
        if isinstance(answer, SiteError):
            raise answer
        p = answer
        if not p["plan_fits"]:
            raise SiteError(site.name, f"the plan does not fit this site's privacy budget: {calls} round(s) at "
                                       f"ε={plan.epsilon:g} would bring its ε to {p['plan_epsilon_total']:.3f}; "
                                       f"{p['epsilon_remaining']:.3f} of ε {p['epsilon_budget']:g} remaining "
                                       f"at δ={p['delta']:g}")
    return {s.name: a for s, a in zip(sites, answers)}


def _plan_answer(site: Site, plan: PrivatePlan, calls: int) -> dict | SiteError:
    try:
        answer = site.privacy_query(plan.plan_query(calls))
    except SiteError as e:
        return e
    if not isinstance(answer, dict) or "privacy" not in answer or "error" in answer:
        why = answer.get("error") if isinstance(answer, dict) else type(answer).__name__
        return SiteError(site.name, f"cannot check the privacy plan: {why}")
    return answer["privacy"]


def _error_of(fn, *args) -> SiteError | None:
    try:
        fn(*args)
    except SiteError as e:
        return e
    return None


@dataclass
class Stopwatch:
    """Named wall-clock durations for the set-up steps of a run (recorded in metrics.json)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def time(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)
