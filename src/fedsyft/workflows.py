"""Whole runs, one call each: what ``fedsyft simulate``, ``fedsyft run`` and ``fedsyft demo`` do.

Each function takes a :class:`~fedsyft.experiment.RunConfig` and the run's inputs, does
everything the command does (data, partition, sites, checks, federation, run directory)
and returns the :class:`~fedsyft.federation.FederationResult`. A surface passes ``say``
(one line for the user) and ``observers`` (progress displays for the sites and config);
both default to silence, so the Python API runs quietly.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .connection import SiteCredentials
from .errors import ParameterError, param
from .experiment import RunConfig, Stopwatch, default_run_dir, run_experiment
from .federation import FederationResult, RoundObserver

Say = Callable[[str], None]
Observers = Callable[[list, RunConfig], Sequence[RoundObserver]]


def _silent(line: str) -> None:
    pass


def _no_observers(sites: list, config: RunConfig) -> Sequence[RoundObserver]:
    return ()


def resumed(run_dir: Path, out: Path | None = None) -> tuple[RunConfig, dict]:
    """The settings of the run in ``run_dir`` to continue: its RunConfig and its whole stored config."""
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise ParameterError(f"{param('resume')} continues in its own run directory; leave out {param('out')}")
    try:
        stored = json.loads((Path(run_dir) / "config.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"{run_dir} is not a run directory (no config.json)") from None
    return RunConfig.from_dict(stored), stored


def simulate(config: RunConfig, sites: int = 2, *, partition: str = "iid", partition_settings: dict | None = None,
             data: Path | None = None, label: str | None = None, test_file: Path | None = None,
             data_dir: Path | None = None, out: Path | None = None, resume: Path | None = None,
             min_sites: int | None = None, site_timeout: float = 300.0, workers: int | None = None,
             say: Say = _silent, observers: Observers = _no_observers) -> FederationResult:
    """Federate over in-process sites on this machine's cores: what ``fedsyft simulate`` does.

    Parameters
    ----------
    config : the run's settings (rounds, strategy, privacy, ...).
    sites : how many sites to split the training data over.
    partition, partition_settings : how (:func:`fedsyft.partition.make_partition`'s name and options).
    data, label, test_file : an own table (CSV, Parquet, NPZ) with its label column instead of MNIST, and
        the researcher's test table (default: a stratified 20 % of ``data`` held out first).
    data_dir : standard MNIST files instead of the bundled copy.
    out : the run directory (default: ``runs/<UTC timestamp>``).
    resume : continue the run in this directory: its stored settings replace the others.
    min_sites, site_timeout : the quorum and per-call timeout (:func:`fedsyft.federate`).
    workers : worker processes for the sites' fits (default: one per core).
    """
    from . import partition as partitions
    from .data import load_mnist
    from .sites import LocalSite
    from .sites.simulation import engine_for

    settings = dict(partition_settings or {})
    if resume is not None:
        config, stored = resumed(resume, out)
        out, sites, partition = Path(resume), len(stored["sites"]), stored.get("partition", "iid")
        settings = stored.get("partition_settings", {"alpha": stored["alpha"]} if "alpha" in stored else {})
        data_dir = data_dir or (Path(stored["data_dir"]) if stored.get("data_dir") else None)
        if stored.get("data_file"):
            data, label = Path(stored["data_file"]), stored["label"]
            test_file = Path(stored["test_file"]) if stored.get("test_file") else None
    if data is not None:
        if config.feature_map is not None:
            raise ParameterError(f"the feature map {config.feature_map.name!r} maps 28 x 28 images; "
                                 f"{param('data')} holds a table: leave out {param('features')}")
        train, test, prefix, config = _own_table(data, label, test_file, config, say)
    else:
        mnist = load_mnist(data_dir)
        train, test = (mapped(part, config.feature_map, say, what) for part, what in
                       ((mnist.train, "training images"), (mnist.test, "test images")))
        prefix = "MNIST Part"
    shards = partitions.make_partition(partition, train.y, sites, config.seed, **settings)
    site_list = [LocalSite(f"{prefix} {i + 1}", train.subset(idx), privacy=simulated_guard(config),
                           seed=(config.seed, i))
                 for i, idx in enumerate(shards)]
    counts = partitions.label_counts(train.y, shards, int(train.y.max()) + 1)
    out = out or default_run_dir()
    extra = {"site_kind": "local", "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
             "partition": partition, "partition_settings": settings,
             "label_counts": {s.name: c.tolist() for s, c in zip(site_list, counts)},
             **({"data_file": str(Path(data).resolve()), "label": label,
                 "test_file": str(Path(test_file).resolve()) if test_file else None} if data is not None else {})}
    workers = workers or os.cpu_count() or 2
    with engine_for(site_list, workers):  # the fits run in one worker process per core
        # Two calls in flight per worker: while one runs, the next already waits in the
        # worker's queue, so no worker idles while this process hands it the next site.
        return run_experiment(site_list, config, test, out, observers=observers(site_list, config), extra=extra,
                              min_sites=min_sites, site_timeout=site_timeout, resume=resume is not None,
                              max_workers=2 * workers)


def simulated_guard(config: RunConfig):
    """A simulated private site's guard: an in-memory ledger whose budget is the run's ε (None: not private)."""
    if not config.private:
        return None
    from .privacy import PrivacyGuard, PrivacyLedger

    classes = len(config.schema["classes"]) if config.schema else 10
    return PrivacyGuard(PrivacyLedger.in_memory(config.epsilon, config.delta), classes=classes)


def _own_table(data: Path, label: str | None, test_file: Path | None, config: RunConfig, say: Say):
    """A simulation on the user's table: (training rows, test rows, site name prefix, config with its schema).

    The schema is derived from the training rows (their observed ranges become the public
    scaling, which ``say`` reports); the test set must fit it.
    """
    from .data import Images
    from .schema import Schema, in_schema
    from .tabular import load_table

    if not label:
        raise ParameterError(f"{param('data')} needs {param('label')}, the name of the label column")
    table = load_table(data, label)
    if test_file is None:
        from sklearn.model_selection import train_test_split

        rows = train_test_split(np.arange(len(table)), test_size=0.2, random_state=config.seed, stratify=table.y)
        say(f"No test set: holding out a stratified 20 % of {Path(data).name} ({len(rows[1])} rows) as the test set.")
        table, test_table = (replace(table, X=table.X[r], y=table.y[r]) for r in rows)
    else:
        test_table = load_table(test_file, label)
    schema, notice = Schema.derive(table, name=Path(data).stem)
    say(notice)
    config = replace(config, schema=schema.to_dict())
    config.make_strategy()  # a strategy with the schema's shapes
    return Images(table.X, schema.encode_labels(table)), in_schema(test_table, schema), "Site", config


def check_privacy_mode(credentials: Sequence[SiteCredentials], config: RunConfig) -> RunConfig:
    """``config`` with the sites' δ, after checking that its ε matches what the sites say of their privacy."""
    private = [c for c in credentials if c.private]
    if private and config.epsilon is None:
        p = private[0].privacy
        raise ParameterError(f"{private[0].name} is private (differential privacy; budget "
                             f"ε={p.get('epsilon_budget')} at δ={p.get('delta')}): pass {param('epsilon')} E, the ε "
                             f"this run may spend on each site (e.g. {param('epsilon')} 1)")
    if config.epsilon is not None:
        public = [c for c in credentials if c.private is False]
        if public:
            raise ParameterError(f"{public[0].name} runs without differential privacy (launched with --no-dp): "
                                 f"leave out {param('epsilon')}")
    return config


def agreed_features(credentials: Sequence[SiteCredentials]) -> dict | None:
    """The public feature map every site declares (None: raw data); :class:`ValueError` when they differ."""
    maps = {c.name: c.features for c in credentials}
    kinds = {json.dumps(m, sort_keys=True) for m in maps.values()}
    if len(kinds) > 1:
        names = list(maps)
        first = maps[names[0]]
        other = next(n for n in names if maps[n] != first)
        raise ValueError(f"the sites' feature maps differ: {names[0]} declares {first or 'raw pixels'}, {other} "
                         f"{maps[other] or 'raw pixels'}; the owners must launch with the same --features")
    return next(iter(maps.values()), None)


def sites_delta(credentials: Sequence[SiteCredentials]) -> float | None:
    """The smallest δ of the private sites (the run's δ when the researcher names none); None: no private site."""
    deltas = [c.privacy["delta"] for c in credentials if c.private and c.privacy.get("delta")]
    return min(deltas) if deltas else None


def run_on_datasites(credentials: Sequence[SiteCredentials], config: RunConfig, *, out: Path | None = None,
                     test_file: Path | None = None, label: str | None = None, data_dir: Path | None = None,
                     resume: Path | None = None, approval_timeout: float = 120.0, min_sites: int | None = None,
                     site_timeout: float = 300.0, timings: dict | None = None,
                     syft_import: threading.Thread | None = None, say: Say = _silent,
                     observers: Observers = _no_observers) -> FederationResult:
    """A researcher's run on real datasites: what ``fedsyft run`` does.

    Connects to every site in ``credentials``, submits the training function the run needs and
    waits for every owner's approval, checks the plan against each site's work limits and
    privacy budget, federates, and writes the run directory. The test set is MNIST's (from
    ``data_dir`` or the bundled copy), or for a tabular federation ``test_file`` with its
    ``label`` in the sites' agreed schema (None: the global model is not scored).
    A private run's δ should be the sites' (:func:`sites_delta`).
    """
    from .data import load_mnist
    from .experiment import connect_sites, request_approval, resolve_site_rows
    from .schema import Schema, agreed_schema, in_schema
    from .tabular import load_table

    if resume is not None:
        config, stored = resumed(resume, out)
        out = Path(resume)
        data_dir = data_dir or (Path(stored["test_data_dir"]) if stored.get("test_data_dir") else None)
        test_file = test_file or (Path(stored["test_file"]) if stored.get("test_file") else None)
        label = label or stored.get("label")
    else:
        config = check_privacy_mode(credentials, config)
    schema = agreed_schema({c.name: c.schema for c in credentials})
    config = replace(config, features=agreed_features(credentials))
    if schema is not None:
        config = replace(config, schema=schema)
        config.make_strategy()
        if test_file is not None and not label:
            raise ParameterError(f"{param('test_file')} needs {param('label')}, the name of its label column")
        test = in_schema(load_table(test_file, label), Schema.from_dict(schema)) if test_file else None
        if test is None:
            say("No test set: the global model is not scored; only what the sites release is reported.")
        extra = {"test_file": str(Path(test_file).resolve()) if test_file else None, "label": label}
    else:
        test = mapped(load_mnist(data_dir).test, config.feature_map, say, "test images")
        extra = {"test_data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    watch = Stopwatch(dict(timings or {}))
    out = out or default_run_dir()
    with watch.time("import_syft"):
        if syft_import is not None:
            syft_import.join()
        from .sites.syft_site import import_syft

        import_syft()
    say(f"Connecting to {len(credentials)} datasites ...")
    with watch.time("login"):
        sites = connect_sites(credentials)
    with watch.time("approval"):
        request_approval(sites, approval_timeout, config.function_name)
    say(f"Training function {config.function_name} approved by every datasite.")
    if config.private:
        config = resolve_site_rows(sites, config)  # sampling sized to the smallest site, unless given
        plan = config.plan
        say(f"Private run: ε={plan.epsilon:g} per site at δ={plan.delta:g} over {plan.rounds} rounds "
            f"(noise multiplier {plan.noise_multiplier:.3f}, clip {plan.clip:g}, sampling rate "
            f"{plan.sample_rate:g}, {plan.steps} steps per round)")
    result = run_experiment(sites, config, test, out, observers=observers(sites, config),
                            extra={"site_kind": "pysyft", **extra}, timings=watch.seconds, min_sites=min_sites,
                            site_timeout=site_timeout, resume=resume is not None)
    return result


def demo(config: RunConfig, sites: int = 2, *, port_base: int | None = None, data_dir: Path | None = None,
         out: Path | None = None, min_sites: int | None = None, site_timeout: float = 300.0,
         say: Say = _silent, observers: Observers = _no_observers,
         on_started: Callable[[Any], None] | None = None,
         on_finished: Callable[[FederationResult], None] | None = None) -> FederationResult:
    """Everything on this machine: launch ``sites`` MNIST datasites, run as the researcher, stop them.

    The datasites are private with budget ``config.epsilon`` when the run is private, else
    ``--no-dp``. ``on_started`` receives the running :class:`~fedsyft.datasite.launch.Datasites`
    (e.g. to print their banner), ``on_finished`` the result while they still run (e.g. to print
    the summary before they stop). The datasites are stopped however the run ends.
    """
    from .data import load_mnist
    from .datasite.launch import DEFAULT_PORT_BASE, Datasites, shard_mnist
    from .sites.syft_site import import_syft

    start = time.perf_counter()
    mnist = load_mnist(data_dir)
    # PySyft's import takes seconds: do it while the datasites start.
    syft_import = threading.Thread(target=import_syft, daemon=True)
    syft_import.start()
    port_base = DEFAULT_PORT_BASE if port_base is None else port_base
    say(f"Starting {sites} datasites on ports {port_base}..{port_base + sites - 1} ...")
    t0 = time.perf_counter()
    datasites = Datasites(shard_mnist(mnist, sites, config.seed), port_base=port_base, mock_seed=config.seed,
                          private=config.private, epsilon=config.epsilon,
                          delta=config.delta if config.private else None, features=config.feature_map)
    try:
        datasites.start()
        timings = {"load_data": round(t0 - start, 3), "datasites_start": round(time.perf_counter() - t0, 3)}
        for key in ("import_seconds", "provision_seconds"):  # the slowest datasite's share of the start
            timings[f"datasite_{key}"] = max(s.startup.get(key, 0.0) for s in datasites.sites)
        if on_started is not None:
            on_started(datasites)
        result = run_on_datasites([s.credentials for s in datasites.sites], config, out=out, data_dir=data_dir,
                                  approval_timeout=60, min_sites=min_sites, site_timeout=site_timeout,
                                  timings=timings, syft_import=syft_import, say=say, observers=observers)
        if on_finished is not None:
            on_finished(result)
        return result
    finally:
        datasites.stop()
        say("Datasites stopped.")


def mapped(images: "Images", feature_map: Any, say: Say = _silent, what: str = "images") -> "Images":  # noqa: F821
    """``images`` through a public feature map (None: unchanged), cached on disk by content and map.

    The map is data-independent, so its output for the same images never changes: a
    simulation maps MNIST once per machine (about a minute for 70,000 images on 2 cores).
    """
    import hashlib

    from .data import Images, mnist_cache_dir

    if feature_map is None or feature_map.name == "none":
        return images
    key = hashlib.sha256(json.dumps(feature_map.to_dict(), sort_keys=True).encode()
                         + np.ascontiguousarray(images.X).tobytes()).hexdigest()[:24]
    path = mnist_cache_dir() / f"features-{key}.npy"
    try:
        X = np.load(path, allow_pickle=False)
        if X.shape[0] == len(images):
            return Images(X, images.y)
    except (OSError, ValueError):
        pass
    say(f"Mapping {len(images):,} {what} through the public feature map {feature_map.to_dict()} ...")
    X = feature_map.transform(images.X)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, X)
        tmp.replace(path)
    except OSError:  # a read-only cache only costs the next run the transform again
        pass
    return Images(X, images.y)
