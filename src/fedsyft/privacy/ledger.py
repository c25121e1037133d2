"""A datasite's durable record of the privacy it has spent: ``privacy_ledger.json`` in its state folder.

The ledger holds the owner's budget (ε, δ) and one *charge* per call of the private
training function: the mechanism the site executed (σ, q, steps), when and for whom.
Spent ε is never stored as a number to add up: it is recomputed from all charges by
the accountant (:func:`~fedsyft.privacy.accountant.epsilon_spent`), which composes
them more tightly than adding ε per call would.

Durability and failure rules (what the owner relies on):

- a charge is written (temporary file, fsync, atomic rename, fsync of the folder)
  *before* the call reads any data, so a crash mid-call still counts as spent;
- one lock (``fcntl.flock`` on ``privacy_ledger.lock``, plus a thread lock) covers
  read-check-write, so concurrent calls cannot both spend the last of the budget;
- the file carries a SHA-256 of its content; a missing, unparsable or inconsistent
  ledger raises :class:`LedgerError`, and the site refuses every private call (fail closed).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .accountant import ADD_OR_REMOVE, REPLACE_ONE, Mechanism, epsilon_spent

LEDGER_FILE = "privacy_ledger.json"
FORMAT = "fedsyft-privacy-ledger/2"
#: Ledgers of fedsyft before the public row count: their charges are re-accounted as replace-one.
LEGACY_FORMAT = "fedsyft-privacy-ledger/1"
#: What ε refers to, written into the ledger and shown by ``fedsyft budget``.
NEIGHBOURING = ("add-or-remove-one record; public: the schema, the mechanism's settings and the row "
                "count the site declares (not its exact count)")

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class LedgerError(RuntimeError):
    """The ledger cannot be trusted (missing, corrupt, unreadable): refuse, do not guess."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Charge:
    """One call's privacy cost, as the site executed it."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    requester: str = ""
    time: str = field(default_factory=_now)
    call: str = field(default_factory=lambda: uuid.uuid4().hex)
    relation: str = ADD_OR_REMOVE

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism(self.noise_multiplier, self.sample_rate, self.steps, self.relation)


@dataclass
class LedgerState:
    """The ledger's content: the budget and every charge so far."""

    epsilon_budget: float
    delta: float
    charges: list[Charge] = field(default_factory=list)
    dataset: str = ""
    created: str = field(default_factory=_now)
    read_format: str = FORMAT  # the format it was read in (always written in FORMAT)

    def spent(self, extra: list[Mechanism] = ()) -> float:
        """ε spent by every charge (plus ``extra``, e.g. a call being considered), at the ledger's δ."""
        return epsilon_spent([c.mechanism for c in self.charges] + list(extra), self.delta)

    def summary(self) -> dict:
        spent = self.spent()
        return {"epsilon_budget": self.epsilon_budget, "epsilon_spent": spent,
                "epsilon_remaining": max(0.0, self.epsilon_budget - spent), "delta": self.delta,
                "calls": len(self.charges), "last_call": self.charges[-1].time if self.charges else None,
                "neighbouring": NEIGHBOURING}

    def legacy_charges(self) -> int:
        """How many charges were made under the earlier relation (re-accounted as replace-one)."""
        return sum(c.relation == REPLACE_ONE for c in self.charges)

    def to_json(self) -> str:
        body = {"format": FORMAT, "neighbouring": NEIGHBOURING, "dataset": self.dataset, "created": self.created,
                "epsilon_budget": self.epsilon_budget, "delta": self.delta,
                "charges": [asdict(c) for c in self.charges]}
        return json.dumps({**body, "sha256": _digest(body)}, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> LedgerState:
        try:
            doc = json.loads(text)
            body = {k: v for k, v in doc.items() if k != "sha256"}
            if doc.get("format") not in (FORMAT, LEGACY_FORMAT):
                raise ValueError(f"format is {doc.get('format')!r}, not {FORMAT!r}")
            if doc.get("sha256") != _digest(body):
                raise ValueError("its checksum does not match its content")
            # An earlier fedsyft released the exact row count with every answer: its charges count as replace-one.
            legacy = {"relation": REPLACE_ONE} if doc["format"] == LEGACY_FORMAT else {}
            state = cls(epsilon_budget=float(doc["epsilon_budget"]), delta=float(doc["delta"]),
                        charges=[Charge(**{**c, **legacy}) for c in doc["charges"]], dataset=str(doc["dataset"]),
                        created=str(doc["created"]), read_format=doc["format"])
            _check_budget(state.epsilon_budget, state.delta)
            for c in state.charges:
                c.mechanism  # validates each charge
        except (ValueError, KeyError, TypeError) as e:
            raise LedgerError(f"privacy ledger {where} is corrupt ({e}); refusing private calls") from None
        return state


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _check_budget(epsilon: float, delta: float) -> None:
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"the privacy budget epsilon must be a positive number, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


class PrivacyLedger:
    """The ledger of one data set: a file (``path``) on a datasite, or memory (``path=None``) in a simulation."""

    def __init__(self, path: Path | None, _state: LedgerState | None = None):
        self.path = None if path is None else Path(path)
        self._memory = _state
        key = str(self.path.resolve()) if self.path else f"memory-{id(self)}"
        with _thread_locks_guard:
            self._thread_lock = _thread_locks.setdefault(key, threading.Lock())

    @classmethod
    def in_memory(cls, epsilon: float, delta: float, dataset: str = "") -> PrivacyLedger:
        """A ledger that lives as long as this object: for in-process simulations."""
        _check_budget(epsilon, delta)
        return cls(None, LedgerState(epsilon, delta, dataset=dataset))

    @classmethod
    def open_or_create(cls, path: Path, epsilon: float | None, delta: float | None, dataset: str,
                       create: bool) -> tuple[PrivacyLedger, str]:
        """The ledger at ``path``; created with the given budget when ``create`` and absent.

        A given ``epsilon``/``delta`` different from the stored one replaces it (the owner's
        decision; the spent charges stay). Returns the ledger and a line saying what happened.
        """
        ledger = cls(path)
        if not ledger.path.exists():
            if not create:
                raise LedgerError(f"privacy ledger {path} is missing; refusing private calls")
            _check_budget(epsilon, delta)
            with ledger.transaction() as state:
                state.epsilon_budget, state.delta, state.dataset = epsilon, delta, dataset
            return ledger, f"new privacy budget ε={epsilon:g} at δ={delta:g}"
        with ledger.transaction() as state:
            changed = []
            if state.read_format == LEGACY_FORMAT:  # rewritten in the new format below, with each old charge marked replace-one
                as_before = epsilon_spent([dataclasses.replace(c.mechanism, relation=ADD_OR_REMOVE)
                                           for c in state.charges], state.delta)
                changed.append(f"{state.legacy_charges()} charges of an earlier fedsyft, which released the exact "
                               f"row count, re-accounted as replace-one: ε spent {as_before:.3f} -> {state.spent():.3f}")
            owner = []
            if epsilon is not None and epsilon != state.epsilon_budget:
                _check_budget(epsilon, state.delta)
                owner.append(f"ε {state.epsilon_budget:g} -> {epsilon:g}")
                state.epsilon_budget = epsilon
            if delta is not None and delta != state.delta:
                _check_budget(state.epsilon_budget, delta)
                owner.append(f"δ {state.delta:g} -> {delta:g}")
                state.delta = delta
            spent = state.spent()
        what = (f"budget changed by the owner ({', '.join(owner)})" if owner else "budget kept") + \
            "".join(f"; {c}" for c in changed)
        return ledger, f"{what}: ε={state.epsilon_budget:g} at δ={state.delta:g}, {spent:.3f} spent"

    @contextmanager
    def transaction(self):
        """Lock, read, let the caller change the state, write it back durably, unlock.

        The state is written only if the block exits normally; raises :class:`LedgerError`
        if the ledger cannot be read.
        """
        with self._thread_lock:
            if self.path is None:
                state = LedgerState(**{**asdict(self._memory), "charges": list(self._memory.charges)})
                yield state
                self._memory = state
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_suffix(".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    if self.path.exists():
                        state, before = self._read(), self.path.read_text()
                    else:  # only open_or_create gets here with a new file to make
                        state, before = LedgerState(epsilon_budget=1.0, delta=0.5), None
                    yield state
                    if state.to_json() != before:  # also rewrites a legacy ledger in the current format
                        self._write(state)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> LedgerState:
        """A consistent snapshot of the ledger."""
        with self.transaction() as state:
            return state

    def _read(self) -> LedgerState:
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise LedgerError(f"privacy ledger {self.path} cannot be read ({e}); refusing private calls") from None
        return LedgerState.from_json(text, str(self.path))

    def _write(self, state: LedgerState) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(state.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself must survive a power cut
        finally:
            os.close(folder)
