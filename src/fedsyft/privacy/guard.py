"""The site's privacy guard: what decides, before any private row is read, whether a call may run.

A datasite in private mode passes every execution of approved code through
:meth:`PrivacyGuard.admit` (see :mod:`fedsyft.datasite.execution_guard`); an in-process
simulation site does the same. The guard

- reads the mechanism from the call's config with the same strict rules the training
  function applies (so the cost is that of what will execute, never a number the
  caller reports);
- composes it with everything the ledger holds and refuses a call that would exceed
  the budget, naming the remaining ε;
- otherwise writes the charge durably, and only then lets the call read data.

It also answers two questions that read no data: ``{"query": "status"}`` and
``{"query": "plan", ...mechanism..., "calls": k}`` (does a whole run fit?).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .accountant import Mechanism
from .ledger import Charge, LedgerError, PrivacyLedger

#: The keys of the private training function's config (see ``task.local_train_dp``).
DP_CONFIG_KEYS = frozenset({"noise_multiplier", "sample_rate", "steps", "clip", "lr", "l2"})
#: Keys it may also carry, all data-independent and so free of privacy cost: the strategy's terms
#: (FedProx, SCAFFOLD), the federation's public schema (class count, feature scaling), the
#: researcher's centre of the features (from its own data) and the site's public row count, which
#: the guard fills in.
DP_OPTIONAL_KEYS = frozenset({"mu", "correction", "n_classes", "scale", "center", "rows"})
#: Default class count of the training functions (MNIST's digits).
DEFAULT_CLASSES = 10


def public_row_count(rows: int) -> int:
    """The row count a datasite publishes by default: ``rows`` rounded to two significant figures.

    The exact count never leaves a private site: it would tell an adversary who knows every other
    row whether one more is there, which add-or-remove-one neighbours must hide. Its answers carry
    this figure instead and DP-SGD divides by it. It is a public fact the owner declares (as the
    schema is), not covered by ε, and says no more than "about 30,000 rows"; an owner whose even
    rounded size is secret declares another (``fedsyft launch --public-rows``).
    """
    if int(rows) != rows or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows}")
    return max(1, int(float(f"{int(rows):.2g}")))
PLAN_KEYS = frozenset({"query", "noise_multiplier", "sample_rate", "steps", "calls"})


class PrivacyRefusal(RuntimeError):
    """The guard refuses a call; ``status`` is the ledger's summary (safe to show the caller)."""

    def __init__(self, message: str, status: dict | None = None):
        super().__init__(message)
        self.status = status or {}


def _number(config: dict, key: str, kind: type = float) -> float:
    value = config.get(key)
    ok = (isinstance(value, int) if kind is int else isinstance(value, int | float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value):
        raise PrivacyRefusal(f"config[{key!r}] must be {'an integer' if kind is int else 'a finite number'}, "
                             f"got {value!r}")
    return value


def mechanism_of(config: Any, keys: frozenset = DP_CONFIG_KEYS, optional: frozenset = DP_OPTIONAL_KEYS) -> Mechanism:
    """The DP-SGD mechanism a config makes the training function execute; :class:`PrivacyRefusal` if malformed."""
    if not isinstance(config, dict) or not keys <= set(config) <= keys | optional:
        raise PrivacyRefusal(f"a private call's config must have the keys {sorted(keys)}"
                             + (f" and may have {sorted(optional)}" if optional else ""))
    try:
        return Mechanism(_number(config, "noise_multiplier"), _number(config, "sample_rate"),
                         _number(config, "steps", int))
    except ValueError as e:
        raise PrivacyRefusal(str(e)) from None


def _fmt(status: dict) -> str:
    return (f"{status['epsilon_remaining']:.3f} of ε {status['epsilon_budget']:g} remaining "
            f"at δ={status['delta']:g}")


@dataclass
class PrivacyGuard:
    """Enforces a :class:`PrivacyLedger`'s budget; ``record`` (optional) is told of every debit and refusal.

    ``rows`` is the data set's *public* row count (:func:`public_row_count`, or the owner's
    declared figure): the guard hands it to the training function, which divides by it and
    returns it as ``n_train``, and the status answer includes it so that a researcher can size
    DP-SGD's batches. ``classes``, the data set's class count (public: the schema), is the only
    ``n_classes`` a call may name.
    """

    ledger: PrivacyLedger
    record: Callable[[str, dict], None] | None = None
    rows: int | None = None
    classes: int = DEFAULT_CLASSES

    def note(self, kind: str, **fields: Any) -> None:
        """Tell ``record`` of an event (a debit, a refusal) for the audit log."""
        if self.record is not None:
            self.record(kind, fields)

    def status(self) -> dict:
        """Budget, spent, remaining, δ, the number of calls and the rows (raises :class:`LedgerError` if unreadable)."""
        summary = self.ledger.read().summary()
        return summary if self.rows is None else {**summary, "rows": self.rows}

    def query(self, config: dict) -> dict:
        """Answer a status or plan question (reads no data, spends nothing)."""
        if config.get("query") == "status" and set(config) == {"query"}:
            return {"privacy": self.status()}
        if config.get("query") == "plan":
            mechanism = mechanism_of(config, PLAN_KEYS, frozenset())
            calls = _number(config, "calls", int)
            if not 1 <= calls <= 100_000:
                raise PrivacyRefusal(f"calls must be between 1 and 100000, got {calls}")
            state = self.ledger.read()
            status = state.summary()
            alone = Mechanism(mechanism.noise_multiplier, mechanism.sample_rate, mechanism.steps * calls)
            after = state.spent([alone])
            return {"privacy": {**status, "plan_epsilon_total": after, "plan_fits": after <= state.epsilon_budget}}
        raise PrivacyRefusal("a query must be {'query': 'status'} or {'query': 'plan', noise_multiplier, "
                             "sample_rate, steps, calls}")

    def prepared(self, config: dict) -> dict:
        """The config the training function runs with: the caller's, with this site's public row count.

        Raises :class:`PrivacyRefusal` (before anything is charged) when the call names another
        class count or row count than the site's public ones.
        """
        if self.rows is None:
            raise PrivacyRefusal("this site has no public row count; its owner must relaunch it")
        if config.get("rows", self.rows) != self.rows:
            raise PrivacyRefusal(f"config['rows'] must be this site's public row count {self.rows} (or left out)")
        if config.get("n_classes", DEFAULT_CLASSES) != self.classes:
            raise PrivacyRefusal(f"config['n_classes'] must be this site's class count {self.classes}")
        return {**config, "rows": self.rows}

    def admit(self, config: Any, requester: str = "") -> dict:
        """Charge one private training call, durably, before it runs.

        Returns the privacy report to attach to the call's answer; raises
        :class:`PrivacyRefusal` (nothing charged) when the config is malformed or the
        call does not fit the remaining budget, and :class:`LedgerError` when the ledger
        cannot be trusted.
        """
        try:
            mechanism = mechanism_of(config)
            self.prepared(config)
            with self.ledger.transaction() as state:
                before = state.summary()
                after = state.spent([mechanism])
                if after > state.epsilon_budget:
                    raise PrivacyRefusal(
                        f"privacy budget exhausted: this call would bring ε to {after:.3f}, over the budget; "
                        f"{_fmt(before)}", before)
                charge = Charge(mechanism.noise_multiplier, mechanism.sample_rate, mechanism.steps, requester)
                state.charges.append(charge)
        except (PrivacyRefusal, LedgerError) as e:
            self.note("privacy_refused", requester=requester, reason=str(e))
            raise
        report = {"epsilon_spent": after, "epsilon_call": after - before["epsilon_spent"],
                  "epsilon_budget": before["epsilon_budget"], "delta": before["delta"],
                  "epsilon_remaining": max(0.0, before["epsilon_budget"] - after), "call": charge.call}
        self.note("privacy_debit", requester=requester, call=charge.call, noise_multiplier=charge.noise_multiplier,
                  sample_rate=charge.sample_rate, steps=charge.steps, epsilon_spent=after)
        return report

    def run(self, config: Any, train: Callable[[dict], dict], requester: str = "") -> dict:
        """Answer a query, or admit a call and run ``train(config)`` with it; refusals come back as ``{"error": ...}``.

        ``train`` receives the config to run (:meth:`prepared`: with the public row count).
        This is how a private call looks to its caller on a datasite and in a simulation alike.
        """
        try:
            if isinstance(config, dict) and "query" in config:
                return self.query(config)
            report = self.admit(config, requester)
        except PrivacyRefusal as e:
            return {"error": str(e), "privacy": e.status}
        except LedgerError as e:
            return {"error": str(e)}
        out = train(self.prepared(config))
        if isinstance(out, dict):
            out = {**out, "privacy": report}
        return out
