"""Plain console lines for each round, compatible with the project fedsyft replaces.

::

    === FL epoch 1/5 ===
      MNIST Part 1 -> train=0.9270, test=0.9212
      MNIST Part 2 -> train=0.9281, test=0.9190
      FedAvg epoch 1: intercept shape=(10,), coef shape=(10, 784)
      Global model -> test=0.9205, loss=0.2871 (4.1 s)
"""

from __future__ import annotations

import sys
from typing import TextIO

from .aggregate import Params
from .history import RoundRecord


class PlainConsole:
    """Prints the seed-compatible lines when a round ends (sites in their configured order)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def round_started(self, round_no: int, rounds: int) -> None:
        self.rounds = rounds

    def site_finished(self, *args) -> None:
        pass

    def round_finished(self, record: RoundRecord, params: Params) -> None:
        lines = [f"=== FL epoch {record.round}/{self.rounds} ==="]
        for name, s in record.sites.items():
            lines.append(f"  {name} -> train={s.train_accuracy:.4f}, test={s.test_accuracy:.4f}")
        for name, reason in record.failures.items():
            lines.append(f"  {name} -> failed: {reason} (left out of this round; asked again next round)")
        lines.append(f"  FedAvg epoch {record.round}: intercept shape={params['intercept'].shape}, "
                     f"coef shape={params['coef'].shape}")
        g = record.global_
        lines.append(f"  Global model -> test={g.test_accuracy:.4f}, loss={g.test_loss:.4f} ({record.seconds:.1f} s)")
        print("\n".join(lines), file=self.stream, flush=True)
