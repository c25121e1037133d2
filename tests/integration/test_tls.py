"""TLS for datasites (fedsyft.datasite.tls) and certificate pinning for researchers (fedsyft.pinning).

The pinning tests talk to a real HTTPS server: uvicorn on a free 127.0.0.1 port, serving
with a certificate from make_self_signed. The last test logs in to a real PySyft Datasite
over pinned HTTPS.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import select
import shutil
import socket
import socketserver
import stat
import subprocess
import threading
import time
import warnings

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from urllib3.exceptions import InsecureRequestWarning

from fedsyft.datasite.tls import (
    TlsError,
    ensure_self_signed,
    fingerprint,
    load_owner_cert,
    make_self_signed,
    normalize_fingerprint,
    uvicorn_ssl_kwargs,
)
from fedsyft.pinning import PinnedSession, PinningError, pinned_session

WRONG = "ab" * 32


# ---------------------------------------------------------------------------------------------
# certificates


def test_make_self_signed_writes_a_server_cert_for_an_ip(tmp_path):
    files = make_self_signed("127.0.0.1", tmp_path / "tls", days=30)
    assert files.cert == tmp_path / "tls" / "tls-cert.pem" and files.key == tmp_path / "tls" / "tls-key.pem"
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == []
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.issuer == cert.subject
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
    assert 30 < days < 30.01
    assert files.fingerprint == fingerprint(files.cert)
    assert len(files.fingerprint) == 64 and files.fingerprint == files.fingerprint.lower()


def test_make_self_signed_uses_a_dns_name_for_a_host_name(tmp_path):
    files = make_self_signed("site-a.example.org", tmp_path)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["site-a.example.org"]
    again = make_self_signed("site-a.example.org", tmp_path)  # replaces the pair: a new fingerprint
    assert again.fingerprint != files.fingerprint


def test_fingerprint_is_sha256_of_der_from_any_input(tmp_path):
    files = make_self_signed("127.0.0.1", tmp_path)
    pem = files.cert.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert cert.fingerprint(hashes.SHA256()).hex() == files.fingerprint
    assert fingerprint(str(files.cert)) == fingerprint(pem) == fingerprint(pem.decode()) == fingerprint(der)
    (tmp_path / "c.der").write_bytes(der)
    assert fingerprint(tmp_path / "c.der") == files.fingerprint


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_fingerprint_matches_openssl(tmp_path):
    files = make_self_signed("127.0.0.1", tmp_path)
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(files.cert)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.split("=", 1)[1].replace(":", "").lower() == files.fingerprint
    assert normalize_fingerprint(out) == files.fingerprint


def test_normalize_fingerprint_accepts_common_spellings():
    fp = "0123456789abcdef" * 4
    colons = ":".join(fp[i:i + 2] for i in range(0, 64, 2)).upper()
    for text in (fp, fp.upper(), colons, f"SHA256 Fingerprint={colons}", f"sha256:{fp}", f" {fp} "):
        assert normalize_fingerprint(text) == fp
    with pytest.raises(TlsError, match="not a SHA-256 fingerprint"):
        normalize_fingerprint(fp[:-1])
    with pytest.raises(TlsError, match="not a SHA-256 fingerprint"):
        normalize_fingerprint("z" * 64)


def test_load_owner_cert_accepts_a_matching_pair(tmp_path):
    files = make_self_signed("127.0.0.1", tmp_path)
    assert load_owner_cert(str(files.cert), str(files.key)) == files
    assert uvicorn_ssl_kwargs(files) == {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


def test_load_owner_cert_refuses_bad_pairs_in_one_line(tmp_path):
    a = make_self_signed("127.0.0.1", tmp_path / "a")
    b = make_self_signed("127.0.0.1", tmp_path / "b")
    with pytest.raises(TlsError) as e:
        load_owner_cert(a.cert, b.key)
    assert _one_line(e) == f"{b.key} is not the private key of {a.cert}"
    with pytest.raises(TlsError) as e:
        load_owner_cert(tmp_path / "none.pem", a.key)
    assert _one_line(e) == f"{tmp_path / 'none.pem'}: no such certificate file"
    with pytest.raises(TlsError) as e:
        load_owner_cert(a.cert, tmp_path / "none.pem")
    assert _one_line(e) == f"{tmp_path / 'none.pem'}: no such key file"
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsError) as e:
        load_owner_cert(junk, a.key)
    assert _one_line(e).startswith(f"{junk}: not a PEM or DER X.509 certificate")
    with pytest.raises(TlsError) as e:
        load_owner_cert(a.cert, a.cert)
    assert _one_line(e) == f"{a.cert}: not a PEM private key"
    key = serialization.load_pem_private_key(a.key.read_bytes(), password=None)
    locked = tmp_path / "locked.pem"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(TlsError) as e:
        load_owner_cert(a.cert, locked)
    assert _one_line(e).startswith(f"{locked}: the key is encrypted")


def test_load_owner_cert_refuses_an_expired_certificate(tmp_path):
    a = make_self_signed("127.0.0.1", tmp_path)
    key = serialization.load_pem_private_key(a.key.read_bytes(), password=None)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")])
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(dt.datetime(2020, 1, 1)).not_valid_after(dt.datetime(2021, 1, 1))
           .sign(key, hashes.SHA256()))
    expired = tmp_path / "expired.pem"
    expired.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(TlsError) as e:
        load_owner_cert(expired, a.key)
    assert _one_line(e) == f"{expired}: the certificate expired on 2021-01-01 00:00 UTC"


def test_ensure_self_signed_keeps_the_fingerprint_across_restarts(tmp_path):
    first = ensure_self_signed("127.0.0.1", tmp_path)
    assert ensure_self_signed("127.0.0.1", tmp_path) == first
    other_host = ensure_self_signed("10.1.2.3", tmp_path)  # the old certificate does not name this host
    assert other_host.fingerprint != first.fingerprint


# ---------------------------------------------------------------------------------------------
# a real HTTPS server


class HttpsServer:
    """uvicorn serving a tiny app over HTTPS on a free 127.0.0.1 port, in a thread; records requests."""

    def __init__(self, app, files):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="critical", ws="none", lifespan="off",
                                timeout_graceful_shutdown=2, **uvicorn_ssl_kwargs(files))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("HTTPS test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def https(tmp_path_factory):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    seen: list[tuple[str, str, bytes]] = []

    async def record(request):
        seen.append((request.method, request.url.path, await request.body()))
        return PlainTextResponse("pong")

    app = Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST", "PUT"])])
    files = make_self_signed("127.0.0.1", tmp_path_factory.mktemp("tls"))
    with HttpsServer(app, files) as server:
        server.files, server.seen = files, seen
        yield server


def test_pinned_request_succeeds_without_ca_or_warnings(https):
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureRequestWarning)
        with pinned_session(https.url, https.files.fingerprint) as s:
            assert isinstance(s, PinnedSession) and s.origin == https.url
            r = s.get(https.url + "/api/v2/metadata")
            assert (r.status_code, r.text) == (200, "pong")
            # what PySyft passes (verify=True), and what IGNORE_TLS_ERRORS makes it pass (verify=False)
            assert s.post(https.url + "/api/v2/api_call", data=b"call", verify=True, proxies={}).text == "pong"
            assert s.get(https.url + "/x", verify=False).text == "pong"
    assert ("POST", "/api/v2/api_call", b"call") in https.seen


def test_wrong_pin_fails_before_anything_is_sent(https):
    origin = https.url
    for verify in (True, False):
        t = time.monotonic()
        with pinned_session(https.url, WRONG) as s, pytest.raises(PinningError) as e:
            s.post(https.url + "/api/v2/login", data=b"the password", verify=verify)
        assert time.monotonic() - t < 2  # refused at once, not retried
        assert _one_line(e) == (f"certificate fingerprint of {origin} is {https.files.fingerprint}, "
                                f"expected {WRONG} from the connection file")
        assert (e.value.actual, e.value.expected, e.value.origin) == (https.files.fingerprint, WRONG, origin)
        assert e.value.public_message == str(e.value)  # survives PySyft's SyftException(public_message=...)
    assert not [s for s in https.seen if s[1] == "/api/v2/login"]  # the password never left


def test_without_pinning_the_self_signed_certificate_is_refused(https):
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(https.url + "/plain")
    # what PySyft's own session does
    with requests.Session() as s, pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        s.get(https.url + "/plain", verify=True, proxies={})
    # a pinned session pins one origin only: another origin (same server, by name) is verified normally
    with pinned_session(https.url, https.files.fingerprint) as s, pytest.raises(requests.exceptions.SSLError):
        s.get(f"https://localhost:{https.port}/other")
    assert not [s for s in https.seen if s[1] in ("/plain", "/other")]


def test_pin_spellings_and_refusals(https):
    colons = ":".join(https.files.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    with pinned_session(https.url, colons) as s:
        assert s.get(https.url + "/colons").text == "pong"
    with pytest.raises(PinningError, match="needs an https:// URL"):
        pinned_session(f"http://127.0.0.1:{https.port}", https.files.fingerprint)
    with pytest.raises(PinningError, match="not a SHA-256 fingerprint"):
        pinned_session(https.url, "1234")


def test_pysyft_port_443_urls_reach_the_pinned_port(https):
    # PySyft 0.9.5 turns https://host:PORT into https://host:443/... for every request it sends
    with pinned_session(https.url, https.files.fingerprint) as s:
        assert s.get(f"https://127.0.0.1:443/api/v2/api?x=1").text == "pong"
    assert ("GET", "/api/v2/api", b"") in https.seen


def test_environment_proxies_are_ignored(https, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    with pinned_session(https.url, https.files.fingerprint) as s:
        assert s.get(https.url + "/no-proxy").text == "pong"


class _ConnectProxy(socketserver.ThreadingTCPServer):
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that records the tunnels it opens."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _TunnelHandler)
        self.tunnels: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _TunnelHandler(socketserver.StreamRequestHandler):
    def handle(self):
        target = self.rfile.readline().decode().split()[1]
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        host, port = target.rsplit(":", 1)
        self.server.tunnels.append(target)
        with socket.create_connection((host, int(port))) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            ends = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 5)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)


def test_pin_holds_through_an_explicit_proxy_tunnel(https):
    proxy = _ConnectProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with pinned_session(https.url, https.files.fingerprint) as s:
            assert s.get(https.url + "/via-proxy", proxies={"https": proxy.url}).text == "pong"
        with pinned_session(https.url, WRONG) as s, pytest.raises(PinningError):
            s.get(https.url + "/via-proxy-refused", proxies={"https": proxy.url})
        assert proxy.tunnels == [f"127.0.0.1:{https.port}"] * 2
        assert not [s for s in https.seen if s[1] == "/via-proxy-refused"]
    finally:
        proxy.shutdown()
        proxy.server_close()


# ---------------------------------------------------------------------------------------------
# PySyft: a real Datasite over pinned HTTPS


@pytest.mark.integration
def test_pinned_login_to_a_real_pysyft_datasite(tmp_path):
    from fedsyft.pinning import login
    from fedsyft.sites.syft_site import import_syft

    sy = import_syft()
    from fastapi import APIRouter, FastAPI
    from syft.client.client import HTTPConnection
    from syft.serde.deserialize import _deserialize
    from syft.serde.serialize import _serialize
    from syft.server.datasite import Datasite
    from syft.server.routes import make_routes
    from syft.store.blob_storage.on_disk import OnDiskBlobStorageClientConfig, OnDiskBlobStorageConfig

    email, password = "owner@example.org", "a-long-test-password"
    with contextlib.redirect_stdout(io.StringIO()):
        worker = Datasite(name="tls-site", reset=True, deployment_type="remote",
                          db_url=f"sqlite:///{tmp_path}/syft.sqlite", root_email=email, root_password=password,
                          blob_storage_config=OnDiskBlobStorageConfig(
                              client_config=OnDiskBlobStorageClientConfig(base_directory=tmp_path / "blob")))
    paths: list[str] = []
    app = FastAPI()

    @app.middleware("http")
    async def log_paths(request, call_next):
        paths.append(request.url.path)
        return await call_next(request)

    router = APIRouter()
    router.include_router(make_routes(worker=worker))
    app.include_router(router, prefix="/api/v2")
    files = make_self_signed("127.0.0.1", tmp_path / "tls")
    sessions: list[PinnedSession] = []  # every session login() makes, to close them before the server stops
    real_init = PinnedSession.__init__

    def tracked_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        sessions.append(self)

    try:
        with HttpsServer(app, files) as server, pytest.MonkeyPatch.context() as tracking:
            tracking.setattr(PinnedSession, "__init__", tracked_init)
            # 1. a wrong pin: refused before the metadata request, so no password is ever sent
            with pytest.raises(PinningError, match=f"^certificate fingerprint of {server.url} is {files.fingerprint}"):
                login(server.url, email, password, WRONG)
            assert paths == []

            # 2. the right pin: login and API calls, none of them through PySyft's bare requests.post
            def no_bare_post(*args, **kwargs):
                raise AssertionError("PySyft sent a request outside the pinned session")

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(requests, "post", no_bare_post)
                with contextlib.redirect_stdout(io.StringIO()):
                    client = login(server.url, email, password, files.fingerprint)
                    assert client.name == "tls-site"
                    assert client.account.email == email          # an API call (make_call)
                    assert len(client.datasets.get_all()) == 0     # another one
            assert {"/api/v2/metadata", "/api/v2/login", "/api/v2/api", "/api/v2/api_call"} <= set(paths)
            assert isinstance(client.connection.session_cache, PinnedSession)
            assert client.api.connection is client.connection

            # 3. a wrong password is PySyft's usual refusal
            with pytest.raises(sy.SyftException, match="Invalid credentials"), \
                    contextlib.redirect_stdout(io.StringIO()):
                login(server.url, email, "wrong", files.fingerprint)

            # 4. what is serialised is a plain HTTPConnection: the server never sees the pin
            copy = _deserialize(_serialize(client.connection, to_bytes=True), from_bytes=True)
            assert type(copy) is HTTPConnection and copy.session_cache is None and copy.url.port == server.port
            assert len(sessions) == 3
            for session in sessions:  # idle keep-alive TLS connections would delay uvicorn's shutdown
                session.close()
    finally:
        worker.stop()
