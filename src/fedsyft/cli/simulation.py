"""Runs on this machine: ``fedsyft simulate`` (in-process sites) and ``fedsyft demo`` (real datasites, then a run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..privacy.plan import DEFAULT_DELTA
from .app import INTERRUPTED_RUN, user_errors
from .options import (ALPHA, BETA1, BETA2, CLASSES_PER_CLIENT, CLIENTS_PER_ROUND, CLIP, DATA_DIR, CENTER, DP_LR, DP_STEPS,
                      EMA, FEATURES, JSON, L2, LOCAL_ITERS, MIN_SITES, MIN_SIZE, MU, OUT, PARTITION, PORT_BASE, QUIET,
                      RESUME, ROUNDS, SAMPLE_RATE, SEED, SERVER_LR, SERVER_MOMENTUM, SHARD_SIZE, SHARDS_PER_CLIENT,
                      SITE_TIMEOUT, STRATEGY, TAU, VERBOSE, WEIGHTED, FeatureName, Partition, StrategyName,
                      interrupt_on_signals, output, partition_settings, print_banner, run_config, strategy_settings)


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
    local_iters: Optional[int] = LOCAL_ITERS,
    l2: float = L2,
    weighted: Optional[bool] = WEIGHTED,
    data_dir: Optional[Path] = DATA_DIR,
    min_sites: Optional[int] = MIN_SITES,
    site_timeout: float = SITE_TIMEOUT,
    resume: Optional[Path] = RESUME,
    quiet: bool = QUIET,
    json_summary: bool = JSON,
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.01, help="Train privately (DP-SGD): each simulated site gets this budget and the run spends it.", rich_help_panel="Differential privacy"),
    delta: float = typer.Option(DEFAULT_DELTA, "--delta", min=1e-12, max=0.5, help="δ of the private run's guarantee.", rich_help_panel="Differential privacy"),
    sample_rate: Optional[float] = SAMPLE_RATE,
    dp_steps: Optional[int] = DP_STEPS,
    clip: float = CLIP,
    dp_lr: Optional[float] = DP_LR,
    center: Optional[bool] = CENTER,
    strategy: StrategyName = STRATEGY,
    mu: Optional[float] = MU,
    server_lr: Optional[float] = SERVER_LR,
    server_momentum: Optional[float] = SERVER_MOMENTUM,
    beta1: Optional[float] = BETA1,
    beta2: Optional[float] = BETA2,
    tau: Optional[float] = TAU,
    clients_per_round: Optional[float] = CLIENTS_PER_ROUND,
    ema: Optional[float] = EMA,
    features: FeatureName = FEATURES,
    data: Optional[Path] = typer.Option(None, "--data", help="Your own table (CSV, Parquet or NPZ; numeric features) instead of MNIST, partitioned over the sites; needs --label.", rich_help_panel="Own data"),
    label: Optional[str] = typer.Option(None, "--label", help="The label column of --data and --test.", rich_help_panel="Own data"),
    test_file: Optional[Path] = typer.Option(None, "--test", help="The researcher's test set (same columns as --data). Default: a stratified 20 % of --data, held out before partitioning.", rich_help_panel="Own data"),
) -> None:
    """No servers: the same loop and training functions with in-process sites, on both cores (fast experiments)."""
    from ..experiment import default_run_dir
    from ..workflows import simulate as simulate_run

    start = time.perf_counter()
    with output(quiet, json_summary) as out_, user_errors(INTERRUPTED_RUN):
        config = run_config(rounds, seed, local_iters, l2, weighted, epsilon, delta, sample_rate, dp_steps, clip,
                            dp_lr, strategy_settings(strategy, mu, server_lr, server_momentum, beta1, beta2, tau,
                                                     clients_per_round, ema), features, center)
        out = resume or out or default_run_dir()
        result = simulate_run(config, sites, partition=partition.value,
                              partition_settings=partition_settings(partition, alpha=alpha, min_size=min_size,
                                                                    shards_per_client=shards_per_client,
                                                                    shard_size=shard_size,
                                                                    classes_per_client=classes_per_client),
                              data=data, label=label, test_file=test_file, data_dir=data_dir, out=out, resume=resume,
                              min_sites=min_sites, site_timeout=site_timeout, say=out_.say,
                              observers=out_.observers)
        out_.close()
        out_.summary(result.history, out, time.perf_counter() - start)


def demo(
    sites: int = typer.Option(2, "--sites", min=1, max=16, help="Number of datasites."),
    rounds: int = ROUNDS,
    seed: int = SEED,
    port_base: int = PORT_BASE,
    out: Optional[Path] = OUT,
    local_iters: Optional[int] = LOCAL_ITERS,
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
    center: Optional[bool] = CENTER,
    strategy: StrategyName = STRATEGY,
    mu: Optional[float] = MU,
    server_lr: Optional[float] = SERVER_LR,
    server_momentum: Optional[float] = SERVER_MOMENTUM,
    beta1: Optional[float] = BETA1,
    beta2: Optional[float] = BETA2,
    tau: Optional[float] = TAU,
    clients_per_round: Optional[float] = CLIENTS_PER_ROUND,
    ema: Optional[float] = EMA,
    features: FeatureName = FEATURES,
) -> None:
    """Everything on this machine: launch datasites, run FedAvg as a researcher, stop the datasites."""
    from ..experiment import default_run_dir
    from ..workflows import demo as demo_run

    interrupt_on_signals()
    start = time.perf_counter()
    with output(quiet, False, verbose) as out_, user_errors("interrupted; the datasites were stopped and finished "
                                                            "rounds kept"):
        config = run_config(rounds, seed, local_iters, l2, None, epsilon, None, sample_rate, dp_steps, clip,
                            dp_lr, strategy_settings(strategy, mu, server_lr, server_momentum, beta1, beta2, tau,
                                                     clients_per_round, ema), features, center)
        out = out or default_run_dir()
        def summary(result) -> None:
            out_.close()
            out_.summary(result.history, out, time.perf_counter() - start)

        demo_run(config, sites, port_base=port_base, data_dir=data_dir, out=out, min_sites=min_sites,
                 site_timeout=site_timeout, say=out_.say, observers=out_.observers,
                 on_started=lambda datasites: print_banner(datasites.sites, out_.say), on_finished=summary)
