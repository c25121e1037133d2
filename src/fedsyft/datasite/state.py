"""What a data owner's state folder says about each datasite: its mode, privacy ledger and work limits.

Read from the files ``fedsyft launch --state DIR`` keeps (``site-i/site.json``, the ledger), so
it answers whether or not the datasites are running; ``fedsyft budget`` shows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..limits import WorkLimits
from ..privacy.ledger import LEDGER_FILE, LedgerError, PrivacyLedger


@dataclass(frozen=True)
class SiteState:
    """One datasite's kept state.

    ``ledger`` is the ledger's summary (None when the site has no ledger); ``ledger_error``
    says why a ledger could not be trusted (the site then refuses private calls).
    """

    name: str
    folder: Path
    private: bool
    limits: WorkLimits
    ledger: dict | None = None
    ledger_error: str | None = None


def site_states(state: Path) -> list[SiteState]:
    """Every datasite kept in ``state`` (``fedsyft launch --state``); :class:`ValueError` if it holds none."""
    folders = sorted(p for p in Path(state).glob("site-*") if (p / "site.json").exists())
    if not folders:
        raise ValueError(f"{state} holds no datasite state (start them with 'fedsyft launch --state {state}')")
    states = []
    for folder in folders:
        spec = json.loads((folder / "site.json").read_text())
        ledger = error = None
        if (folder / LEDGER_FILE).exists():
            try:
                ledger = PrivacyLedger(folder / LEDGER_FILE).read().summary()
            except LedgerError as e:
                error = f"{spec['name']}: {e}"
        states.append(SiteState(spec["name"], folder, bool(spec.get("privacy", {}).get("private", False)),
                                WorkLimits.from_dict(spec.get("limits")), ledger, error))
    return states
