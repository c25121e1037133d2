"""Plain console lines for each round, compatible with the project fedsyft replaces.

::

    === FL epoch 1/5 ===
      MNIST Part 1 -> train=0.9270, test=0.9212
      MNIST Part 2 -> train=0.9281, test=0.9190
      FedAvg epoch 1: intercept shape=(10,), coef shape=(10, 784)
      Global model -> test=0.9205, loss=0.2871 (4.1 s)

A private (DP) site withholds its local metrics; its line then shows the privacy it has spent::

      MNIST Part 1 -> metrics withheld (DP), ε spent 0.412 of 10 (δ=1e-05)
"""

from __future__ import annotations

import sys
from typing import TextIO

from .aggregate import Params
from .history import RoundRecord


def site_summary(s, sep: str = ", ") -> str:
    """A site's round in a few words: its local accuracies, or what a private site spent."""
    if s.private:
        return f"metrics withheld (DP), ε spent {s.epsilon_spent:.3f} of {s.epsilon_budget:g} (δ={s.delta:g})"
    return f"train={s.train_accuracy:.4f}{sep}test={s.test_accuracy:.4f}"


class PlainConsole:
    """Prints the seed-compatible lines when a round ends (sites in their configured order).

    ``strategy`` names the aggregation line: "FedAvg epoch 1: ..." as in the replaced
    project, "FedAdam + EMA 0.95 epoch 1: ..." for another strategy.
    """

    def __init__(self, stream: TextIO | None = None, strategy: str = "FedAvg"):
        self.stream = stream or sys.stdout
        self.strategy = strategy

    def round_started(self, round_no: int, rounds: int) -> None:
        self.rounds = rounds

    def site_finished(self, *args) -> None:
        pass

    def round_finished(self, record: RoundRecord, params: Params) -> None:
        lines = [f"=== FL epoch {record.round}/{self.rounds} ==="]
        for name, s in record.sites.items():
            lines.append(f"  {name} -> {site_summary(s)}")
        for name, reason in record.failures.items():
            lines.append(f"  {name} -> failed: {reason} (left out of this round; asked again next round)")
        lines.append(f"  {self.strategy} epoch {record.round}: intercept shape={params['intercept'].shape}, "
                     f"coef shape={params['coef'].shape}")
        g = record.global_
        if g.test_accuracy is None:  # no researcher's test set: only what the sites release
            lines.append(f"  Global model -> not scored (no --test set) ({record.seconds:.1f} s)")
        else:
            lines.append(f"  Global model -> test={g.test_accuracy:.4f}, loss={g.test_loss:.4f} "
                         f"({record.seconds:.1f} s)")
        print("\n".join(lines), file=self.stream, flush=True)


class LiveProgress:
    """A rich display for terminals: the round, each site's status and the latest global accuracy.

    The seed-compatible lines of :class:`PlainConsole` are printed above the display
    as each round ends, so the scrollback holds the whole run.
    """

    def __init__(self, sites: list[str], console=None, strategy: str = "FedAvg"):
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self.sites = list(sites)
        self.strategy = strategy
        self.status = {name: "waiting" for name in self.sites}
        self.round, self.rounds, self.accuracy = 0, 0, None
        self.lines = PlainConsole(stream=_RichStream(self.console), strategy=strategy)
        self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=True)

    def _table(self):
        from rich.table import Table

        title = f"{self.strategy} round {self.round}/{self.rounds}" if self.round else f"{self.strategy}: connecting"
        if self.accuracy is not None:
            title += f"   global test accuracy {self.accuracy:.4f}"
        table = Table(title=title, title_justify="left", min_width=72)
        table.add_column("site")
        table.add_column("status")
        colours = {"waiting": "dim", "training": "yellow", "failed": "red"}
        for name in self.sites:
            status = self.status[name]
            table.add_row(name, f"[{colours.get(status.split()[0], 'green')}]{status}[/]")
        return table

    def round_started(self, round_no: int, rounds: int) -> None:
        if not self.live.is_started:
            self.live.start()
        self.round, self.rounds = round_no, rounds
        self.status = {name: "training" for name in self.sites}
        self.lines.round_started(round_no, rounds)
        self.live.update(self._table())

    def site_finished(self, round_no, site, result, error) -> None:
        self.status[site] = f"failed: {error}" if error else f"done  {site_summary(result.report, sep=' ')}"
        self.live.update(self._table())

    def round_finished(self, record, params) -> None:
        self.accuracy = record.global_.test_accuracy
        self.lines.round_finished(record, params)
        self.live.update(self._table())
        if record.round == self.rounds:
            self.live.stop()

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()


class _RichStream:
    """A file-like object that prints through a rich Console (above a live display)."""

    def __init__(self, console):
        self.console = console

    def write(self, text: str) -> int:
        if text.strip():
            self.console.print(text.rstrip("\n"), highlight=False, markup=False)
        return len(text)

    def flush(self) -> None:
        pass


class Output:
    """What a command prints, by mode.

    - default: messages and a progress display on stdout (a live table on a
      terminal, the plain seed-compatible lines otherwise: CI, pipes, files);
    - ``quiet``: only the final summary;
    - ``json_summary``: the final summary as one JSON object on stdout; messages and
      round lines go to stderr so scripts can parse stdout.
    """

    def __init__(self, quiet: bool = False, json_summary: bool = False):
        self.quiet, self.json_summary = quiet, json_summary
        self.stream = sys.stderr if json_summary else sys.stdout
        self._live: LiveProgress | None = None

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    def observers(self, sites: list, config) -> list:
        """The progress display for a run of ``config`` (a RunConfig) over ``sites``, named by its strategy."""
        if self.quiet:
            return []
        strategy = config.make_strategy().label
        if not self.json_summary and sys.stdout.isatty():
            self._live = LiveProgress([s.name for s in sites], strategy=strategy)
            return [self._live]
        return [PlainConsole(self.stream, strategy=strategy)]

    def close(self) -> None:
        if self._live is not None:
            self._live.close()

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def summary(self, history, run_dir, seconds: float) -> None:
        """The run's final lines (or JSON object)."""
        if self.json_summary:
            import json

            last = history.rounds[-1]
            print(json.dumps({
                "final_global_test_accuracy": history.final_accuracy, "final_global_test_loss": last.global_.test_loss,
                "rounds_completed": len(history.rounds), "run_dir": str(run_dir), "seconds": round(seconds, 3),
                "sites": {n: {"n_train": s.n_train, "test_accuracy": s.test_accuracy,
                              **({"epsilon_spent": s.epsilon_spent, "delta": s.delta} if s.private else {})}
                          for n, s in last.sites.items()},
                "failures": {r.round: r.failures for r in history.rounds if r.failures},
                "global_test_accuracy_per_round": [r.global_.test_accuracy for r in history.rounds],
            }), flush=True)
        else:
            if history.final_accuracy is None:
                print(f"{len(history.rounds)} rounds done; the global model was not scored (no --test set): "
                      "see the sites' own metrics in the report", flush=True)
            else:
                print(f"Global test accuracy after {len(history.rounds)} rounds: {history.final_accuracy:.4f}",
                      flush=True)
            spent = {n: s.epsilon_spent for n, s in history.rounds[-1].sites.items() if s.private}
            if spent:
                print(f"Privacy: up to ε={max(spent.values()):.3f} spent on a site's data (each site's ledger; "
                      f"δ={min(s.delta for s in history.rounds[-1].sites.values() if s.private):g})", flush=True)
            print(f"Run directory: {run_dir}  (open report.html for the full report)", flush=True)
