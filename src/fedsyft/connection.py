"""The connection file a data owner hands to a researcher: ``sites.json``.

Format (a contract other tools use): ``{"sites": [{"name", "url", "email", "password", "privacy", "tls_fingerprint"}]}``.
``tls_fingerprint`` (optional, with an ``https://`` url) is the SHA-256 of the site's certificate;
``schema`` (optional) is a tabular federation's public schema (see :mod:`fedsyft.schema`);
``features`` (optional) the public feature map the site's data went through (see :mod:`fedsyft.features`).
``privacy`` (optional) is what the data owner makes public about the site's privacy:
``{"private": true, "epsilon_budget": 10.0, "delta": 1e-05}`` or ``{"private": false}``.
It holds passwords, so it is written readable by its owner only (mode 0600).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

SITES_FILE = "sites.json"
#: What every fedsyft datasite publishes and the researcher looks for.
DATASET_NAME = "mnist-shard"
ASSET_NAME = "train"


class ConnectionFileError(ValueError):
    """The sites file is missing or malformed."""


@dataclass(frozen=True)
class SiteCredentials:
    name: str
    url: str
    email: str
    password: str
    privacy: dict | None = None  # public: {"private": bool, "epsilon_budget": float, "delta": float}
    tls_fingerprint: str | None = None  # SHA-256 of an https:// site's certificate, pinned by the researcher
    schema: dict | None = None  # a tabular federation's public schema (features, classes, ranges); None: MNIST
    features: dict | None = None  # the public feature map of the site's data (FeatureMap.to_dict()); None: raw

    @property
    def private(self) -> bool | None:
        """Whether the site is private (DP); None if the connection file does not say."""
        return None if self.privacy is None else bool(self.privacy.get("private"))

    def __repr__(self) -> str:  # never print a password by accident
        return f"SiteCredentials(name={self.name!r}, url={self.url!r}, email={self.email!r}, privacy={self.privacy!r})"


def write_sites_file(path: Path, sites: list[SiteCredentials]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"sites": [{k: v for k, v in asdict(s).items() if v is not None} for s in sites]}, f, indent=2)
    os.chmod(path, 0o600)  # also when the file already existed with wider permissions
    return path


def read_sites_file(path: Path) -> list[SiteCredentials]:
    """Read and validate a sites file; raises :class:`ConnectionFileError` with a one-line reason."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConnectionFileError(f"sites file {path} does not exist (start datasites with 'fedsyft launch')") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConnectionFileError(f"cannot read sites file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ConnectionFileError(f"sites file {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    entries = doc.get("sites") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConnectionFileError(f"sites file {path} must hold a non-empty list under \"sites\"")
    sites = []
    for i, entry in enumerate(entries, 1):
        fields = ("name", "url", "email", "password")
        if not isinstance(entry, dict) or any(not isinstance(entry.get(k), str) or not entry[k] for k in fields):
            raise ConnectionFileError(f"sites file {path}: site {i} needs non-empty strings {', '.join(fields)}")
        url = urlparse(entry["url"])
        if url.scheme not in ("http", "https") or not url.hostname or url.port is None:
            raise ConnectionFileError(f"sites file {path}: site {i} url {entry['url']!r} is not http(s)://host:port")
        privacy = entry.get("privacy")
        if privacy is not None and not (isinstance(privacy, dict) and isinstance(privacy.get("private"), bool)):
            raise ConnectionFileError(f"sites file {path}: site {i} privacy must be an object with a boolean \"private\"")
        pin = entry.get("tls_fingerprint")
        if pin is not None:
            if url.scheme != "https" or not isinstance(pin, str):
                raise ConnectionFileError(f"sites file {path}: site {i} has a tls_fingerprint but no https:// url")
            from .fingerprints import TlsError, normalize_fingerprint

            try:
                pin = normalize_fingerprint(pin)
            except TlsError as e:
                raise ConnectionFileError(f"sites file {path}: site {i}: {e}") from None
        schema = entry.get("schema")
        if schema is not None:
            from .schema import Schema, SchemaError

            try:
                Schema.from_dict(schema, source=f"sites file {path}: site {i} schema")
            except SchemaError as e:
                raise ConnectionFileError(str(e)) from None
        features = entry.get("features")
        if features is not None:
            from .features import FeatureMap

            try:
                FeatureMap.from_dict(features)
            except ValueError as e:
                raise ConnectionFileError(f"sites file {path}: site {i} features: {e}") from None
        sites.append(SiteCredentials(**{k: entry[k] for k in fields}, privacy=privacy, tls_fingerprint=pin,
                                     schema=schema, features=features))
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ConnectionFileError(f"sites file {path}: site names must be unique, got {names}")
    return sites


def read_sites_files(paths: list[Path]) -> list[SiteCredentials]:
    """The credentials of every connection file, one list (several owners' files); site names must be unique."""
    credentials = [c for path in paths for c in read_sites_file(path)]
    names = [c.name for c in credentials]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConnectionFileError(f"two sites are named {duplicate!r} across the sites files: ask an owner to "
                                  "relaunch with another --name")
    return credentials
