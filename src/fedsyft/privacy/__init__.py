"""Differential privacy: the accountant (math), the site's ledger and guard (enforcement), the researcher's plan."""

from .accountant import Mechanism, epsilon_spent, noise_multiplier_for
from .guard import PrivacyGuard, PrivacyRefusal
from .ledger import LedgerError, PrivacyLedger
from .plan import PrivatePlan, sampling_for

__all__ = ["LedgerError", "Mechanism", "PrivacyGuard", "PrivacyLedger", "PrivacyRefusal", "PrivatePlan",
           "epsilon_spent", "noise_multiplier_for", "sampling_for"]
