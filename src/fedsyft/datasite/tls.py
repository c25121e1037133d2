"""TLS for a datasite: a self-signed certificate, its fingerprint, and uvicorn's settings.

A data owner who exposes a datasite beyond 127.0.0.1 serves it over HTTPS. No public
certificate authority is needed: the owner makes a self-signed certificate once
(:func:`make_self_signed`, or :func:`ensure_self_signed` to keep it across restarts) and
hands its SHA-256 fingerprint to researchers in the connection file, over the same trusted
channel as the password. The researcher then accepts exactly that certificate and no
other (:mod:`fedsyft.pinning`). An owner with a certificate of its own (for example
from its organisation's CA) loads it with :func:`load_owner_cert`, which checks that the
key belongs to the certificate.

The fingerprint is the SHA-256 of the certificate in DER form, in lowercase hex without
colons: what ``openssl x509 -noout -fingerprint -sha256 -in cert.pem`` prints, minus the
colons, in lowercase.

Serving: ``uvicorn.Config(app, host=..., port=..., **uvicorn_ssl_kwargs(files))``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ..fingerprints import TlsError, normalize_fingerprint  # one definition for both sides

__all__ = ["TlsError", "TlsFiles", "make_self_signed", "ensure_self_signed", "fingerprint",
           "normalize_fingerprint", "load_owner_cert", "uvicorn_ssl_kwargs", "CERT_FILE", "KEY_FILE"]

#: File names :func:`make_self_signed` writes inside its folder.
CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"


@dataclass(frozen=True)
class TlsFiles:
    """A datasite's certificate and private key (PEM files) and the certificate's fingerprint.

    Attributes
    ----------
    cert : Path
        The certificate, PEM.
    key : Path
        Its private key, PEM, unencrypted (uvicorn reads it unattended), mode 0600.
    fingerprint : str
        SHA-256 of the DER certificate, 64 lowercase hex digits: what researchers pin.
    """

    cert: Path
    key: Path
    fingerprint: str


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), also if it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def make_self_signed(host: str, folder: str | Path, days: int = 365) -> TlsFiles:
    """Make a self-signed certificate and key for a datasite served at ``host``.

    The key is EC P-256; the certificate (SHA-256 signature) names ``host`` as its subject
    common name and as its one subject alternative name (an IP address if ``host`` is one,
    otherwise a DNS name), is valid from 5 minutes ago (clock skew) for ``days`` days, and
    is for TLS servers only (not a CA).

    Parameters
    ----------
    host : str
        The IP address or DNS name researchers connect to, e.g. ``"192.0.2.10"`` or
        ``"site-a.example.org"``.
    folder : str or Path
        Where to write ``tls-cert.pem`` and ``tls-key.pem`` (created if missing; existing
        files are replaced, which changes the fingerprint). The key file gets mode 0600.
    days : int, optional
        Validity in days (default 365).

    Returns
    -------
    TlsFiles
        The two paths and the certificate's SHA-256 fingerprint.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not host or not host.strip():
        raise TlsError("a certificate needs the host name or IP address researchers connect to")
    if days < 1:
        raise TlsError(f"certificate validity must be at least 1 day, got {days}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host.strip("[]")[:64]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedsyft datasite")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(cert=cert_path, key=key_path, fingerprint=_der_fingerprint(cert))


def ensure_self_signed(host: str, folder: str | Path, days: int = 365) -> TlsFiles:
    """Reuse the self-signed pair in ``folder`` if it is still good for ``host``, else make one.

    For datasites with a persistent state folder: the fingerprint researchers pinned stays
    valid across restarts. The existing pair is reused when it loads and matches
    (:func:`load_owner_cert`), names ``host`` in its subject alternative names, and is
    valid for at least one more day; otherwise a new pair replaces it (new fingerprint).
    """
    from cryptography import x509

    folder = Path(folder)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.exists() and key_path.exists():
        try:
            files = load_owner_cert(cert_path, key_path)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
            if _san(host) in list(sans) and left > dt.timedelta(days=1):
                return files
        except (TlsError, x509.ExtensionNotFound, ValueError):
            pass
    return make_self_signed(host, folder, days)


def _der_fingerprint(cert) -> str:
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _read(path: Path, what: str) -> bytes:
    """A certificate or key file's bytes; :class:`TlsError` naming the file otherwise."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{path}: no such {what} file") from None
    except OSError as e:
        raise TlsError(f"{path}: cannot be read: {e.strerror or e}") from None


def _load_cert(cert: str | Path | bytes):
    """A certificate from a PEM/DER path, PEM text, or PEM/DER bytes."""
    from cryptography import x509

    if isinstance(cert, str) and cert.lstrip().startswith("-----BEGIN"):
        data, where = cert.encode(), "certificate"
    elif isinstance(cert, (bytes, bytearray, memoryview)):
        data, where = bytes(cert), "certificate"
    else:
        where = str(cert)
        data = _read(Path(cert), "certificate")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data), where
        return x509.load_der_x509_certificate(data), where
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "malformed"
        raise TlsError(f"{where}: not a PEM or DER X.509 certificate ({first})") from None


def fingerprint(cert: str | Path | bytes) -> str:
    """SHA-256 fingerprint of a certificate: 64 lowercase hex digits of its DER encoding.

    Parameters
    ----------
    cert : str, Path or bytes
        A certificate file (PEM or DER), PEM text, or PEM/DER bytes.

    Returns
    -------
    str
        E.g. ``"3f1c...9a"``: ``openssl x509 -noout -fingerprint -sha256`` without colons,
        in lowercase.

    Raises
    ------
    TlsError
        If the file is missing or holds no certificate.
    """
    return _der_fingerprint(_load_cert(cert)[0])


def load_owner_cert(cert: str | Path, key: str | Path) -> TlsFiles:
    """Load a data owner's own certificate and private key, and check that they belong together.

    Parameters
    ----------
    cert : str or Path
        The certificate, PEM (a chain file is fine: the first certificate is the server's).
    key : str or Path
        Its private key, PEM, unencrypted (uvicorn starts unattended).

    Returns
    -------
    TlsFiles
        The two paths and the certificate's fingerprint.

    Raises
    ------
    TlsError
        One line: a file is missing or unreadable, the key is encrypted or not a key, the
        key does not belong to the certificate, or the certificate is expired or not yet valid.
    """
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = Path(cert), Path(key)
    certificate, _ = _load_cert(cert_path)
    key_data = _read(key_path, "key")
    try:
        private = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TlsError(f"{key_path}: the key is encrypted; the datasite needs an unencrypted key "
                       f"(readable by its owner only)") from None
    except ValueError:
        raise TlsError(f"{key_path}: not a PEM private key") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise TlsError(f"{key_path} is not the private key of {cert_path}")
    now = dt.datetime.now(dt.timezone.utc)
    if certificate.not_valid_after_utc < now:
        raise TlsError(f"{cert_path}: the certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if certificate.not_valid_before_utc > now:
        raise TlsError(f"{cert_path}: the certificate is not valid before "
                       f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    return TlsFiles(cert=cert_path, key=key_path, fingerprint=_der_fingerprint(certificate))


def uvicorn_ssl_kwargs(files: TlsFiles) -> dict[str, str]:
    """Keyword arguments that make ``uvicorn.Config`` (or ``uvicorn.run``) serve HTTPS with ``files``.

    Returns
    -------
    dict
        ``{"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}``.
    """
    return {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}
