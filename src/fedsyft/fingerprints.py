"""TLS certificate fingerprints, as both sides spell them: the owner's launcher prints them, the researcher pins them."""

from __future__ import annotations


class TlsError(ValueError):
    """A certificate or key is missing, unreadable, expired, or the pair does not match (one line)."""


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as 64 lowercase hex digits, from any common spelling.

    Accepts colons, spaces, upper case and a ``sha256:`` / ``SHA256 Fingerprint=`` prefix
    (as openssl prints it). Raises :class:`TlsError` if what remains is not 64 hex digits.
    """
    s = str(text).strip()
    for prefix in ("sha256 fingerprint=", "sha256:", "sha256="):
        if s.lower().startswith(prefix):
            s = s[len(prefix):]
    s = s.replace(":", "").replace(" ", "").lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise TlsError(f"not a SHA-256 fingerprint (64 hex digits): {text!r}")
    return s
