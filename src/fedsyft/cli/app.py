"""The ``fedsyft`` command: registers the commands of each group and turns user mistakes into one line.

The groups: the data owner's (:mod:`.owner`: launch, requests, approve, budget, schema),
the researcher's (:mod:`.researcher`: run), the simulations (:mod:`.simulation`: simulate,
demo) and the reports (:mod:`.reports`: report). Each command is a few lines over a public
library function; this module is where a library error's parameter names become flags.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click
import typer

from .. import __version__
from ..connection import ConnectionFileError
from ..data import DataError
from ..datasite.launch import LaunchError
from ..errors import ParameterError
from ..federation import FederationError
from ..partition_options import flags as partition_flags
from ..sites.base import SiteError

app = typer.Typer(
    help="Federated learning with FedAvg over real PySyft datasites.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

USER_ERRORS = (ConnectionFileError, DataError, LaunchError, SiteError, FederationError, ValueError, OSError)

#: How the command line spells the library's parameters: the one place they are mapped (the partition options' flags
#: come from their declarations in fedsyft.partition_options, the strategy options' from theirs).
FLAGS = {
    "num_shards": "--sites", **partition_flags(), "label": "--label", "data": "--data",
    "files": "--data", "names": "--name", "test_file": "--test", "epsilon": "--epsilon", "resume": "--resume",
    "out": "--out", "schema_file": "--schema", "features": "--features", "center": "--center",
}

INTERRUPTED_RUN = "interrupted; the rounds finished so far are in the run directory"


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(interrupted: str = "interrupted"):
    """Turn a user's mistake (or Ctrl-C) into one ``error:`` line and a non-zero exit."""
    try:
        yield
    except KeyboardInterrupt:
        fail(interrupted, 130)
    except ParameterError as e:
        from ..strategies import flags as strategy_flags

        fail(e.render({**FLAGS, **strategy_flags()}))
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


def _register() -> None:
    from . import owner, reports, researcher, simulation

    for command in (owner.launch, researcher.run, simulation.demo, simulation.simulate, reports.report):
        app.command()(command)
    app.command("requests")(owner.list_requests)
    app.command()(owner.approve)
    app.command()(owner.budget)
    app.add_typer(owner.schema_app, name="schema")


_register()


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
