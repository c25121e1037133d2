"""Certificate pinning: the researcher trusts a datasite's certificate by its fingerprint alone.

A datasite serves HTTPS with a self-signed certificate (:mod:`fedsyft.datasite.tls`); the
connection file gives the researcher that certificate's SHA-256 fingerprint. Here every
request to the site's ``https://host:port`` checks, right after the TLS handshake and
before a byte of the request (a password, a model) is sent, that the certificate the
server presented has exactly that fingerprint. Otherwise the request fails with one
:class:`PinningError`::

    certificate fingerprint of https://10.0.0.5:8443 is 9b1f..., expected 3c7a... from the connection file

No certificate authority is consulted and the host name is not matched: the pin is
stronger than both. Without a pin, PySyft verifies certificates normally (against the
system's CAs), so a self-signed datasite is refused.

How PySyft 0.9.5's client talks HTTP (read in ``syft/client/client.py``)
------------------------------------------------------------------------
``sy.login(url=..., port=..., email=..., password=...)`` builds one
``syft.client.client.HTTPConnection`` (a pydantic ``SyftObject``), asks it for the
server's metadata, and then ``SyftClient.login``, the API download and every later call
go through that same connection object (``client.connection``, also ``client.api.connection``).
The connection sends requests in exactly two ways:

1. ``HTTPConnection.session``: a property returning the field ``session_cache``, a
   ``requests.Session`` created on first use with ``HTTPAdapter(max_retries=Retry(total=3,
   backoff_factor=0.5))`` mounted on ``http://`` and ``https://``. ``_make_get`` (server
   metadata ``/api/v2/metadata``, the API ``/api/v2/api``), ``_make_post`` (``/api/v2/login``,
   ``/register``, password reset), ``_make_put`` (blob upload) and ``stream_data`` use it,
   each with ``verify=verify_tls()`` (``True`` unless the environment variable
   ``IGNORE_TLS_ERRORS`` is set) and ``proxies={}``.
2. ``HTTPConnection.make_call``: every API call (``POST /api/v2/api_call``: listing datasets,
   submitting code, running the approved function, fetching results) uses the module
   function ``requests.post(url=api_url, data=..., headers=...)``: a new default session
   per call, not ``self.session``, with requests' default ``verify=True``.

Blob downloads by URL (``BlobRetrievalByURL``, SeaweedFS deployments) call ``requests.get``
directly; fedsyft's datasites keep blobs on disk, which the client reads through API calls (2).

What is hooked, and why it is safe
----------------------------------
:func:`pin_connection` changes one ``HTTPConnection`` *instance*, before its first request:

- its ``session_cache`` field is set to a :class:`PinnedSession`, so (1) uses it. That
  field is PySyft's own slot for the session; it is not serialised (the serialised
  attributes are ``proxy_target_uid``, ``url``, ``rtunnel_token``), so what the server sees
  is unchanged;
- ``make_call`` is shadowed by an instance attribute that is PySyft 0.9.5's ``make_call``
  (same URL, body, headers, status check, deserialisation) sending through that same
  session instead of ``requests.post``, so (2) is pinned too.

The pinned session also repairs a PySyft 0.9.5 bug that otherwise makes HTTPS unusable on
any port but 443: ``ServerURL.with_path`` copies the URL through ``ServerURL.from_url``,
which sets the port of every ``https`` URL to 443, so each request PySyft derives from
``https://host:8443`` goes to ``https://host:443/...``. The session serves one site, so it
sends requests for that host's port 443 to the pinned port, through the same pinned adapter.

Nothing else changes: no PySyft class, module or global, nothing in ``requests`` or
``urllib3``, no environment variable; other connections, pinned to other sites or not
pinned at all, behave exactly as before. It fails closed: should PySyft build a new
session or connection behind our back (``with_proxy``, a reset ``session_cache``), that
one verifies certificates normally and refuses the self-signed certificate.

The check itself is urllib3's ``assert_fingerprint`` (SHA-256 of the peer's DER
certificate, compared in constant time right after the handshake), set on the adapter's
pool manager (and on proxy managers). The adapter turns CA verification off for this one
origin only, because the pin replaces it; ``verify=`` from PySyft is ignored, so
``IGNORE_TLS_ERRORS`` cannot switch pinning off. Pin failures are not retried. The
session ignores proxy, CA and ``.netrc`` settings from the environment (``trust_env = False``).

Use
---
>>> from fedsyft.pinning import login                  # doctest: +SKIP
>>> client = login("https://10.0.0.5:8443", email, password, fingerprint)   # doctest: +SKIP

is ``sy.login(url=..., port=..., email=..., password=...)`` with the pin (it builds the
``ServerURL`` with the right port itself, since ``ServerURL.from_url("https://host:8443")``
gives port 443). With a connection built some other way, call :func:`pin_connection` on
it before its first request; a bare ``requests`` user takes :func:`pinned_session`.
"""

from __future__ import annotations

import re
import types
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.util.retry import Retry

from .fingerprints import TlsError, normalize_fingerprint

__all__ = ["PinningError", "PinnedAdapter", "PinnedSession", "pinned_session", "pin_connection", "login",
           "https_origin"]

_GOT = re.compile(r'got "([0-9a-f]{64})"')


class PinningError(Exception):
    """The server's certificate is not the pinned one (or pinning cannot apply); one line.

    Attributes
    ----------
    origin : str
        ``https://host:port`` of the site.
    expected : str
        The pinned fingerprint (from the connection file).
    actual : str or None
        The fingerprint the server presented, if known.
    """

    def __init__(self, origin: str, expected: str, actual: str | None = None, message: str | None = None):
        self.origin, self.expected, self.actual = origin, expected, actual
        if message is None:
            message = (f"certificate fingerprint of {origin} is {actual or 'unknown'}, "
                       f"expected {expected} from the connection file")
        super().__init__(message)

    @property
    def public_message(self) -> str:
        """The message, under the name PySyft reads when it re-raises errors."""
        return str(self)


def https_origin(url: str, port: int | None = None) -> tuple[str, int]:
    """``(host, port)`` of an ``https://`` URL (``port`` overrides; default 443).

    Raises
    ------
    PinningError
        If the URL is not ``https://`` (a pin means nothing over plain HTTP) or has no host.
    """
    parts = urlsplit(str(url).strip())
    if parts.scheme.lower() != "https":
        raise PinningError(str(url), "", message=f"{url}: a pinned certificate needs an https:// URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise PinningError(str(url), "", message=f"{url}: no host in the URL")
    try:
        explicit = parts.port
    except ValueError:
        raise PinningError(str(url), "", message=f"{url}: the port is not a number") from None
    return host, int(port if port is not None else explicit if explicit is not None else 443)


def _origin_text(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class PinnedAdapter(HTTPAdapter):
    """A ``requests`` transport adapter that accepts one certificate, by its SHA-256 fingerprint.

    Mount it on the site's ``https://host:port/`` prefix. Every connection it opens checks
    the server certificate's DER SHA-256 right after the TLS handshake (urllib3's
    ``assert_fingerprint``), before the request is sent; CA verification and host-name
    matching are off because the pin replaces them. A mismatch raises :class:`PinningError`.

    Parameters
    ----------
    origin : str
        ``https://host:port`` of the site, for messages.
    fingerprint : str
        The pinned SHA-256 fingerprint (any spelling :func:`~fedsyft.datasite.tls.normalize_fingerprint` takes).
    **kwargs
        Passed to ``requests.adapters.HTTPAdapter`` (e.g. ``max_retries``).
    """

    __attrs__ = HTTPAdapter.__attrs__ + ["origin", "fingerprint"]

    def __init__(self, origin: str, fingerprint: str, **kwargs: Any) -> None:
        self.origin = origin
        try:
            self.fingerprint = normalize_fingerprint(fingerprint)
        except TlsError as e:
            raise PinningError(origin, str(fingerprint), message=f"{origin}: {e}") from None
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK,
                         **pool_kwargs: Any) -> None:
        pool_kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        # Through an HTTP proxy's CONNECT tunnel the site's certificate is checked the same way.
        proxy_kwargs["assert_fingerprint"] = self.fingerprint
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        if not str(request.url).lower().startswith("https://"):
            raise PinningError(self.origin, self.fingerprint,
                               message=f"{request.url}: refusing plain HTTP to a pinned site")
        try:
            # verify=False: no CA check; the pool's assert_fingerprint does the checking.
            return super().send(request, stream=stream, timeout=timeout, verify=False, cert=cert, proxies=proxies)
        except requests.exceptions.SSLError as e:
            text = str(e)
            if "Fingerprints did not match" not in text:
                raise
            m = _GOT.search(text)
            raise PinningError(self.origin, self.fingerprint, m.group(1) if m else None) from None


class PinnedSession(requests.Session):
    """A ``requests.Session`` whose requests to one ``https://host:port`` are pinned.

    Requests to that origin go through a :class:`PinnedAdapter`; any other URL gets
    requests' normal verification. Environment settings (proxies, CA bundles, ``.netrc``)
    are ignored. ``origin`` and ``fingerprint`` say what is pinned. Requests for the same
    host on port 443 are sent to the pinned port (PySyft 0.9.5 produces them; see ``_repair``).
    """

    def __init__(self, url: str, fingerprint: str, port: int | None = None) -> None:
        super().__init__()
        self.trust_env = False
        host, port = https_origin(url, port)
        self.origin = _origin_text(host, port)
        # PySyft's own retry policy (3 tries, 0.5 s backoff) minus retries of TLS failures.
        retry = Retry(total=3, backoff_factor=0.5, other=0)
        adapter = PinnedAdapter(self.origin, fingerprint, max_retries=retry)
        self.fingerprint = adapter.fingerprint
        bare = _origin_text(host, 443).rsplit(":", 1)[0]
        self._port443 = _origin_text(host, 443)
        # The site's origin, and the same host on 443 (see _repair): both pinned.
        for prefix in {self.origin, self._port443, bare}:
            self.mount(prefix + "/", adapter)

    def _repair(self, url: Any) -> Any:
        """Send PySyft's ``https://host:443/...`` to the pinned port.

        PySyft 0.9.5's ``ServerURL.with_path`` copies the URL through ``ServerURL.from_url``,
        which sets the port of every ``https`` URL to 443, so every request PySyft derives from
        ``https://host:8443`` goes to ``https://host:443/...``. This session serves one site, so
        it sends such a request to the site's real port (still pinned).
        """
        text = str(url)
        if self.origin == self._port443:
            return url
        low = text.lower()
        if low.startswith(self._port443 + "/") or low == self._port443:
            return self.origin + text[len(self._port443):]
        return url

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        return super().request(method, self._repair(url), *args, **kwargs)


def pinned_session(url: str, fingerprint: str, port: int | None = None) -> PinnedSession:
    """A ``requests.Session`` that accepts ``url``'s server only with the pinned certificate.

    Parameters
    ----------
    url : str
        The site, ``https://host[:port]`` (any path is ignored).
    fingerprint : str
        SHA-256 of the site's DER certificate, hex (colons and case do not matter).
    port : int, optional
        Overrides the URL's port.

    Returns
    -------
    PinnedSession
        ``session.get(url + "/api/v2/metadata")`` etc. raise :class:`PinningError` if the
        server's certificate has another fingerprint.

    Raises
    ------
    PinningError
        If ``url`` is not ``https://`` or ``fingerprint`` is not 64 hex digits.
    """
    return PinnedSession(url, fingerprint, port)


def _make_call_through(session: PinnedSession):
    """PySyft 0.9.5's ``HTTPConnection.make_call``, sending through ``session`` instead of ``requests.post``."""

    def make_call(self, signed_call: Any) -> Any:
        from syft.serde.deserialize import _deserialize
        from syft.serde.serialize import _serialize

        if self.rtunnel_token:  # not a pinned direct connection; let PySyft refuse or handle it
            raise PinningError(session.origin, session.fingerprint,
                               message=f"{session.origin}: reverse tunnels cannot be pinned")
        msg_bytes: bytes = _serialize(obj=signed_call, to_bytes=True)
        response = session.post(url=str(self.api_url), data=msg_bytes, headers=self.headers, proxies={})
        if response.status_code != 200:
            raise requests.ConnectionError(
                f"Failed to fetch metadata. Response returned with code {response.status_code}")
        return _deserialize(response.content, from_bytes=True)

    return make_call


def pin_connection(connection: Any, fingerprint: str) -> Any:
    """Pin a PySyft ``HTTPConnection`` to a certificate fingerprint, before its first request.

    Sets the connection's ``session_cache`` to a :class:`PinnedSession` for its URL and
    routes its ``make_call`` (every API call) through the same session; see the module
    docstring. Only this connection object changes.

    Parameters
    ----------
    connection : syft.client.client.HTTPConnection
        A fresh connection whose ``url`` is ``https://``.
    fingerprint : str
        The site's certificate fingerprint (SHA-256 hex).

    Returns
    -------
    HTTPConnection
        The same object, pinned.

    Raises
    ------
    PinningError
        If the connection's URL is not ``https://``, the fingerprint is malformed, or the
        connection is proxied through a gateway or a reverse tunnel.
    TypeError
        If ``connection`` is not a PySyft ``HTTPConnection``.
    """
    from syft.client.client import HTTPConnection

    if not isinstance(connection, HTTPConnection):
        raise TypeError(f"expected a PySyft HTTPConnection, got {type(connection).__name__}")
    url = connection.url
    if getattr(url, "protocol", None) != "https":
        raise PinningError(str(url), fingerprint, message=f"{url}: a pinned certificate needs an https:// URL")
    if connection.proxy_target_uid is not None or connection.rtunnel_token:
        raise PinningError(str(url), fingerprint,
                           message=f"{url}: only direct connections can be pinned (not gateways or tunnels)")
    session = PinnedSession(f"https://{url.host_or_ip}", fingerprint, port=int(url.port))
    connection.session_cache = session
    # An instance attribute shadows the class's make_call for this object only.
    object.__setattr__(connection, "make_call", types.MethodType(_make_call_through(session), connection))
    return connection


def login(url: str, email: str, password: str, fingerprint: str, *, port: int | None = None,
          cache: bool = True) -> Any:
    """``sy.login`` to an HTTPS datasite whose certificate must have the pinned fingerprint.

    Does what PySyft 0.9.5's ``sy.login(url=..., port=..., email=..., password=...)`` does
    (connect, fetch the metadata, pick the client type, log in), on a connection pinned by
    :func:`pin_connection` from its first request, so the password is never sent to a
    server with another certificate.

    Parameters
    ----------
    url : str
        ``https://host:port`` from the connection file.
    email, password : str
        The researcher's account.
    fingerprint : str
        SHA-256 of the site's certificate, from the connection file.
    port : int, optional
        Overrides the URL's port.
    cache : bool, optional
        Passed to PySyft's ``SyftClient.login`` (as ``sy.login`` does; default True).

    Returns
    -------
    syft.client.datasite_client.DatasiteClient
        The logged-in client; all its later calls stay pinned.

    Raises
    ------
    PinningError
        The server's certificate has another fingerprint (nothing was sent), or the URL is
        not ``https://``.
    requests.exceptions.RequestException
        The site cannot be reached, as with ``sy.login``.
    syft.types.errors.SyftException
        PySyft refused the login (wrong email or password), as with ``sy.login``.
    """
    from syft.client.client import HTTPConnection
    from syft.types.server_url import ServerURL

    host, port = https_origin(url, port)
    connection = pin_connection(HTTPConnection(url=ServerURL(protocol="https", host_or_ip=host, port=port)),
                                fingerprint)
    client_type = connection.get_client_type().unwrap()
    guest = client_type(connection=connection)
    return guest.login(email=email, password=password, cache=cache)
