"""Figures of a run, drawn from its :class:`~fedsyft.history.History` alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .history import History

# Figures are made with matplotlib's object API, not pyplot: no global backend is
# chosen or changed (so notebooks keep their inline display), and nothing is kept
# in pyplot's figure registry.

ACCURACY_PNG = "accuracy.png"
CONFUSION_PNG = "confusion_matrices.png"


def accuracy_figure(history: History):
    """Global and per-site test accuracy per round."""
    rounds = [r.round for r in history.rounds]
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    ax.plot(rounds, [r.global_.test_accuracy for r in history.rounds], "o-", lw=2.5, color="black",
            label="global model (10,000 test images)")
    names = list(dict.fromkeys(n for r in history.rounds for n in (*r.sites, *r.failures)))
    for name in names:
        ax.plot(rounds, [r.sites[name].test_accuracy if name in r.sites else np.nan for r in history.rounds],
                "s--", alpha=0.8, label=f"{name} (local test split)")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(rounds)
    ax.set_title("FedAvg: test accuracy per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(history: History):
    """Confusion matrices of the last round: each site's local test split, then the global model."""
    last = history.rounds[-1]
    panels = [(f"{n}\n(local test)", s.confusion_matrix) for n, s in last.sites.items() if s.confusion_matrix]
    panels.append((f"global model, round {last.round}\n(test set)", last.global_.confusion_matrix))
    fig = Figure(figsize=(3.6 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, cm) in zip(axes[0], panels):
        cm = np.asarray(cm)
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=5.5,
                    color="white" if v > cm.max() / 2 else "black")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
    fig.tight_layout()
    return fig


def write_plots(history: History, out_dir: Path) -> list[Path]:
    """Write the PNG figures into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    written = []
    for name, make in ((ACCURACY_PNG, accuracy_figure), (CONFUSION_PNG, confusion_figure)):
        make(history).savefig(out_dir / name, dpi=120)
        written.append(out_dir / name)
    return written
