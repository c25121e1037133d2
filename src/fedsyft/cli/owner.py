"""The data owner's commands: launch datasites, review requests, see budgets and limits, make and check schemas."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer

from ..connection import SITES_FILE
from ..privacy.plan import DEFAULT_DELTA
from .app import fail, user_errors
from .options import (ALPHA, CLASSES_PER_CLIENT, DATA_DIR, DEFAULT_SITES_FILE, MIN_SIZE, NO_DP_WARNING, OWNER_STATE,
                      PARTITION, PORT_BASE, SHARD_SIZE, SHARDS_PER_CLIENT, FeatureName, Partition, feature_map,
                      interrupt_on_signals, partition_settings, print_banner, progress_bar)


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
    delta: Optional[float] = typer.Option(None, "--delta", min=1e-12, max=0.5, help=f"δ of the budget (default {DEFAULT_DELTA:g}; must be below 1/rows).", rich_help_panel="Differential privacy"),
    no_dp: bool = typer.Option(False, "--no-dp", help="Opt out of differential privacy: release non-private models and local metrics (a researcher can then reconstruct rows of a small data set).", rich_help_panel="Differential privacy"),
    max_passes: Optional[float] = typer.Option(None, "--max-passes", min=0.001, help="The most work one training call may make a datasite do, in passes over its rows (DP-SGD: steps x sample rate; L-BFGS: iterations). Calls above it are refused before any row is read. Default: 100, or what the state holds.", rich_help_panel="Limits"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="Training calls a datasite runs at once; as many more wait their turn, the rest are refused. Default: 2, or what the state holds.", rich_help_panel="Limits"),
    features: FeatureName = typer.Option(FeatureName.none, "--features", help="Map the images once, when a datasite is first provisioned, through a public feature map: scatter (wavelet scattering, J=2, L=8: 3,969 features, kept in the state as uint8) or none. A relaunch from --state keeps the map its state was made with.", rich_help_panel="Features"),
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
    from ..datasite.launch import Datasites, owners_tables
    from ..partition import make_partition

    interrupt_on_signals()
    sites_file = (state / SITES_FILE) if state else DEFAULT_SITES_FILE
    if manual_approval and state is None:
        fail("--manual-approval needs --state DIR, where 'fedsyft requests' and 'fedsyft approve' find the datasites")
    if no_dp and (epsilon is not None or delta is not None):
        fail("--no-dp turns differential privacy off; leave out --epsilon and --delta")
    progress = progress_bar()
    with user_errors("interrupted while starting; every datasite started was stopped"):
        own = owners_tables(data, label, name, schema_file) if data else None
        if own is not None and own.notice:
            typer.echo(own.notice)
        if own is not None:
            sites = len(own.shards)
        datasites = Datasites(own.shards if own else None, n_sites=sites, port_base=port_base, host=host,
                              state_dir=state, mock_seed=seed, mock_rows=mock_rows or None,
                              manual_approval=manual_approval, private=not no_dp, epsilon=epsilon, delta=delta,
                              tls=tls, tls_cert=tls_cert, tls_key=tls_key, insecure=insecure,
                              names=own.names if own else None, schema=own.schema if own else None,
                              public_rows=public_rows,
                              limits={k: v for k, v in (("max_passes", max_passes), ("max_concurrent", max_concurrent))
                                      if v is not None},
                              features=feature_map(features), progress=progress)
        if insecure and not datasites.tls:
            typer.echo(f"WARNING: --insecure: serving plain HTTP on {host}; passwords and models cross the network "
                       "in clear text unless a TLS proxy sits in front.", err=True)
        if own is None and datasites.needs_data():
            from ..data import load_mnist

            train = load_mnist(data_dir).train
            settings = partition_settings(partition, alpha=alpha, min_size=min_size,
                                          shards_per_client=shards_per_client, shard_size=shard_size,
                                          classes_per_client=classes_per_client)
            datasites.shards = [train.subset(idx)
                                for idx in make_partition(partition.value, train.y, sites, seed, **settings)]
        where = "a temporary state, deleted on exit" if datasites.temporary else f"state: {datasites.state_dir}"
        typer.echo(f"Starting {sites} datasites ({where}) ...")
        datasites.start()
    try:
        if datasites.sites_file != sites_file.resolve():
            from ..connection import write_sites_file

            write_sites_file(sites_file, [s.credentials for s in datasites.sites])
        print_banner(datasites.sites)
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



def list_requests(
    state: Path = OWNER_STATE,
    source: bool = typer.Option(False, "--source", help="Print each request's full source code."),
) -> None:
    """Data owner: list pending code requests on your datasites, with what the automatic policy would decide."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table

    from ..datasite.review import connect_as_owner, pending_requests

    with user_errors():
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


def approve(
    request_id: str = typer.Argument(..., help="The request's id, or its first characters (see 'fedsyft requests')."),
    state: Path = OWNER_STATE,
    deny: bool = typer.Option(False, "--deny", help="Deny the request instead of approving it."),
    reason: str = typer.Option("", "--reason", help="Shown to the researcher and written to the audit log."),
    force: bool = typer.Option(False, "--force", help="Approve even what the automatic policy would deny (the code runs inside your datasite, unsandboxed)."),
) -> None:
    """Data owner: approve (or --deny) one pending code request."""
    from ..datasite.review import connect_as_owner, decide

    with user_errors():
        done = decide(connect_as_owner(state), request_id, approve=not deny, reason=reason, force=force)
    typer.echo(f"{'Denied' if deny else 'Approved'} request {done.facts.request_id[:12]} "
               f"({done.facts.function} from {done.facts.requester}) on {done.site}.")


def budget(state: Path = OWNER_STATE) -> None:
    """Data owner: each datasite's privacy budget, what has been spent of it, by how many calls, and its work limits."""
    from rich.console import Console
    from rich.table import Table

    from ..datasite.state import site_states
    from ..privacy.ledger import NEIGHBOURING

    with user_errors():
        states = site_states(state)
    table = Table(title=f"Privacy budgets in {state}", title_justify="left")
    for column in ("site", "mode", "budget ε", "spent ε", "remaining ε", "δ", "calls", "last call",
                   "max passes a call", "calls at once"):
        table.add_column(column)
    for s in states:
        limits = (f"{s.limits.max_passes:g}", str(s.limits.max_concurrent))
        if s.ledger_error:
            table.add_row(s.name, "LEDGER CORRUPT", *["-"] * 6, *limits)
        elif s.ledger is None:
            table.add_row(s.name, "private, no ledger yet" if s.private else "NOT private (--no-dp)", *["-"] * 6,
                          *limits)
        else:
            b = s.ledger
            table.add_row(s.name, "private" if s.private else "NOT private now (--no-dp); ledger kept",
                          f"{b['epsilon_budget']:g}", f"{b['epsilon_spent']:.3f}", f"{b['epsilon_remaining']:.3f}",
                          f"{b['delta']:g}", str(b["calls"]), b["last_call"] or "-", *limits)
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # no wrapping when piped or logged
    typer.echo(f"ε is record-level, for neighbouring data sets by {NEIGHBOURING}.")
    broken = [s.ledger_error for s in states if s.ledger_error]
    if broken:
        fail(broken[0])


schema_app = typer.Typer(help="Data owner: make the federation's public schema from a table, or check a table against one.",
                         no_args_is_help=True)


@schema_app.command("derive")
def schema_derive(
    file: Path = typer.Argument(..., help="A table (CSV, Parquet or NPZ) with numeric features."),
    label: str = typer.Option(..., "--label", help="The label column."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the schema here (default: print it)."),
    name: Optional[str] = typer.Option(None, "--name", help="The schema's name (default: the file's name)."),
) -> None:
    """Derive a schema from a table: its features, classes and observed ranges (edit the ranges to publish others)."""
    from ..schema import Schema
    from ..tabular import load_table

    with user_errors():
        schema, notice = Schema.derive(load_table(file, label), name=name or file.stem)
        if out is None:
            typer.echo(schema.to_json())
            return
        schema.write(out)
    typer.echo(notice.replace("pass it with --schema", "share it; each owner launches with --schema"), err=True)
    typer.echo(f"wrote {out}")


@schema_app.command("check")
def schema_check(
    file: Path = typer.Argument(..., help="A table (CSV, Parquet or NPZ)."),
    schema_file: Path = typer.Option(..., "--schema", help="The federation's schema (JSON)."),
    label: Optional[str] = typer.Option(None, "--label", help="The label column (default: the one column that is not a feature of the schema)."),
) -> None:
    """Check that a table fits a schema (same columns, known classes, values within the ranges)."""
    from ..schema import Schema
    from ..tabular import column_names, load_table

    with user_errors():
        schema = Schema.read(schema_file)
        if label is None and file.suffix.lower() == ".npz":
            label = "y"  # an NPZ table's labels are its array y
        elif label is None:
            others = [c for c in column_names(file) if c not in schema.features]
            if len(others) != 1:
                raise ValueError(f"{file}: cannot tell the label column among {others or 'no column'}: pass --label")
            label = others[0]
        schema.check(load_table(file, label))
    typer.echo(f"{file} fits {schema_file}: {len(schema.features)} features, {len(schema.classes)} classes.")
