"""What a run records: one :class:`RoundRecord` per round, written to ``metrics.json``.

The file's schema is a contract (see the README): keys may be added, never renamed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"


#: Local metrics a private (DP) site does not release.
WITHHELD_UNDER_DP = ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "confusion_matrix",
                     "compute_seconds")


@dataclass
class SiteRound:
    """One site's answer in one round (aggregate metrics only).

    Under differential privacy the local metrics are withheld by the site: they are
    None here (null in metrics.json) and listed in ``withheld``; ``epsilon_spent`` is
    then the site ledger's total ε after this round's call, at ``delta``.
    """

    n_train: int
    train_accuracy: float | None
    test_accuracy: float | None
    train_loss: float | None
    test_loss: float | None
    confusion_matrix: list[list[int]] | None
    seconds: float
    bytes_sent: int       # parameter + config payload sent to the site
    bytes_received: int   # parameter + metrics payload received from it
    compute_seconds: float | None = float("nan")  # inside the training function; seconds - this = transport
    epsilon_spent: float | None = None    # the site's ledger: total ε spent on its data so far
    epsilon_budget: float | None = None   # the site's total budget
    delta: float | None = None
    withheld: list[str] = field(default_factory=list)

    @property
    def private(self) -> bool:
        return self.epsilon_spent is not None


@dataclass
class GlobalEval:
    """The aggregated model evaluated on the researcher's test set (all None when it has none)."""

    test_accuracy: float | None
    test_loss: float | None
    confusion_matrix: list[list[int]] | None


@dataclass
class RoundRecord:
    round: int
    seconds: float
    global_: GlobalEval
    sites: dict[str, SiteRound]            # the sites that answered, in configured order
    failures: dict[str, str] = field(default_factory=dict)  # site -> why it did not answer
    sampled: list[str] | None = None       # the sites called, when the strategy samples (None: all)

    def to_dict(self) -> dict[str, Any]:
        d = {"round": self.round, "seconds": self.seconds, "global": asdict(self.global_),
             "sites": {k: asdict(v) for k, v in self.sites.items()}, "failures": dict(self.failures)}
        if self.sampled is not None:
            d["sampled"] = list(self.sampled)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoundRecord:
        return cls(round=int(d["round"]), seconds=float(d["seconds"]), global_=GlobalEval(**d["global"]),
                   sites={k: SiteRound(**v) for k, v in d["sites"].items()}, failures=d.get("failures", {}),
                   sampled=d.get("sampled"))


@dataclass
class History:
    """A run's configuration and its finished rounds."""

    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # set-up steps, seconds

    @property
    def final_accuracy(self) -> float | None:
        return self.rounds[-1].global_.test_accuracy if self.rounds else None

    def to_dict(self, rounds: bool = True) -> dict[str, Any]:
        return {"config": self.config, "rounds": [r.to_dict() for r in self.rounds] if rounds else [],
                "final": {"global_test_accuracy": self.final_accuracy, "rounds_completed": len(self.rounds)},
                "timings": self.timings}

    def save(self, run_dir: Path) -> Path:
        """Write ``metrics.json`` atomically, so a crash never leaves half a file."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / METRICS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    def to_json(self) -> str:
        """The whole history as JSON, one round per line.

        Written after every round, so it must stay cheap with many rounds and sites: each
        finished round (never changed once appended) and the config are serialised once
        and reused. The config's cache is keyed on its top-level values' identities:
        replace a value to change it, do not mutate one in place.
        """
        config_key = tuple((k, id(v)) for k, v in self.config.items())
        cache = self.__dict__.setdefault("_json_cache", {"config": (None, ""), "rounds": []})
        if cache["config"][0] != config_key:
            cache["config"] = (config_key, json.dumps(_json_safe(self.config)))
        rounds = cache["rounds"]
        del rounds[len(self.rounds):]
        for i, record in enumerate(self.rounds):
            if i >= len(rounds) or rounds[i][0] is not record:
                rounds[i:] = [(record, json.dumps(_json_safe(record.to_dict())))]
        tail = json.dumps(_json_safe({k: v for k, v in self.to_dict(rounds=False).items()
                                      if k not in ("config", "rounds")}))
        body = ",\n".join(text for _, text in rounds)
        return f'{{"config": {cache["config"][1]},\n "rounds": [\n{body}\n],\n {tail[1:]}\n'.replace("[\n\n]", "[]")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(config=d["config"], rounds=[RoundRecord.from_dict(r) for r in d["rounds"]],
                   timings=d.get("timings", {}))

    @classmethod
    def load(cls, run_dir: Path) -> History:
        path = Path(run_dir) / METRICS_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a fedsyft metrics file ({e})") from None


def _json_safe(obj: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj
