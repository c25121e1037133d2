"""The data owner's launcher: start datasites, wait until they serve, write the connection file, stop them.

Each datasite is its own process (:mod:`fedsyft.datasite.server`) with its own
state folder under the launch's state directory. This module does not import
PySyft: it partitions the data, writes each site's folder, starts the processes and
talks to them only through files and one HTTP health check.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..connection import SITES_FILE, SiteCredentials, write_sites_file
from ..data import MNIST, Images
from ..errors import ParameterError, param
from ..limits import WorkLimits
from ..mock import DEFAULT_MOCK_ROWS, synthetic_mock
from ..partition import iid, make_partition
from ..privacy.guard import public_row_count
from ..privacy.plan import DEFAULT_DELTA

DEFAULT_PORT_BASE = 54879
#: A private datasite's budget when the owner sets none: record-level ε over all calls, at δ.
DEFAULT_EPSILON_BUDGET = 10.0
READY_TIMEOUT = 180.0  # PySyft's import alone can take 30 s on a loaded 2-core machine
RESEARCHER_EMAIL = "researcher@fedsyft.org"


class LaunchError(RuntimeError):
    """A datasite could not be started; nothing is left running."""


def site_name(i: int) -> str:
    """Default names, as in the project fedsyft replaces: "MNIST Part 1", "MNIST Part 2", ..."""
    return f"MNIST Part {i}"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As uvicorn does: a port with only TIME_WAIT connections left is free to serve on.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class RunningSite:
    name: str
    url: str
    state: Path
    process: subprocess.Popen
    credentials: SiteCredentials = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def audit_log(self) -> Path:
        return self.state / "audit.jsonl"

    @property
    def startup(self) -> dict:
        """What the datasite reported when it became ready: pid and start-up seconds."""
        return json.loads((self.state / "ready.json").read_text())

    @property
    def admin_password(self) -> str:
        return json.loads((self.state / "secrets.json").read_text())["admin_password"]

    @property
    def features(self) -> dict | None:
        """The public feature map the site's data went through (None: raw data)."""
        return json.loads((self.state / "site.json").read_text()).get("features")

    @property
    def ledger(self) -> Path:
        """The privacy ledger of a private datasite."""
        return self.state / "privacy_ledger.json"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _new_secrets() -> dict[str, str]:
    return {
        "server_id": uuid.uuid4().hex,
        "signing_key": secrets.token_hex(32),  # an Ed25519 seed: any 32 random bytes
        "admin_password": secrets.token_urlsafe(18),
        "researcher_email": RESEARCHER_EMAIL,
        "researcher_password": secrets.token_urlsafe(18),
    }


class Datasites:
    """Datasites started by this process. Use as a context manager, or call :meth:`stop`.

    Parameters
    ----------
    shards : one private data set per site (ignored for sites whose state folder is
        already provisioned, which keep the data they hold).
    port_base : site ``i`` (from 0) listens on ``port_base + i``.
    host : address to bind; 127.0.0.1 keeps the datasites on this machine.
    state_dir : keep every datasite's database, users, dataset and approvals here.
        ``None`` uses a temporary folder that is deleted on :meth:`stop`.
    names : site names; default "MNIST Part 1", "MNIST Part 2", ...
    mock_seed, mock_rows : the synthetic mock's seed (site i uses mock_seed + i) and row
        count (None: as many rows as the shard; see :mod:`fedsyft.mock`).
    manual_approval : no automatic approver; the data owner reviews requests.
    private : differential privacy (the default): the sites approve and run only the DP
        training function, and each enforces its budget in a durable ledger. ``False``
        (``--no-dp``) releases non-private models and local metrics. One value for all
        sites or one per site.
    epsilon, delta : the privacy budget of each private site's data set. None keeps the
        budget a persistent state already holds, or sets :data:`DEFAULT_EPSILON_BUDGET` and
        :data:`DEFAULT_DELTA` for a new one; a value replaces the stored one (spent ε stays).
    tls : serve HTTPS: with the owner's ``tls_cert``/``tls_key``, or a self-signed
        certificate made per site and kept in its state folder. The connection file then
        holds ``https://`` URLs and each certificate's SHA-256 fingerprint, which researchers pin.
    insecure : allow plain HTTP on an address other than loopback (refused otherwise).
    schema : a tabular federation's public schema (:meth:`fedsyft.schema.Schema.to_dict`),
        published in the connection file; the shards then hold float32 features and class
        indices into its classes. None: MNIST.
    public_rows : the row count each private site publishes instead of its exact one (one
        value for all sites or one per site; None: the count rounded to two significant
        figures, :func:`fedsyft.privacy.guard.public_row_count`). Fixed when a site is provisioned.
    limits : the most work one call may do and how many calls run at once, per site: a
        :class:`fedsyft.limits.WorkLimits`, which replaces the stored limits, or a dict of some of
        its fields, which replaces only those. None keeps what a persistent state holds, or the
        defaults for a new one.
    features : a public feature map (:class:`fedsyft.features.FeatureMap`, e.g. wavelet
        scattering) the owner applies to its images once, when a site is provisioned: the
        private asset then holds the features (uint8 on the public grid) and the mock is the
        map of synthetic images. Kept in the state; a relaunch reuses the features, and a
        relaunch with another map is refused. None: what the state holds, or raw pixels.
    progress : called as ``progress(site name, done, total)`` while a site's images are mapped.
    """

    def __init__(self, shards: list[Images] | None, *, n_sites: int | None = None, port_base: int = DEFAULT_PORT_BASE,
                 host: str = "127.0.0.1", state_dir: Path | None = None, names: list[str] | None = None,
                 mock_seed: int = 0, mock_rows: int | None = DEFAULT_MOCK_ROWS, manual_approval: bool = False,
                 ready_timeout: float = READY_TIMEOUT, private: bool | list[bool] = True,
                 epsilon: float | None = None, delta: float | None = None, tls: bool = False,
                 tls_cert: Path | None = None, tls_key: Path | None = None, insecure: bool = False,
                 schema: dict | None = None, public_rows: int | list[int | None] | None = None,
                 limits: WorkLimits | dict | None = None, features: Any = None,
                 progress: Callable[[str, int, int], None] | None = None):
        n_sites = len(shards) if shards is not None else n_sites
        if not n_sites or n_sites < 1:
            raise LaunchError("need at least one datasite")
        if not 1 <= port_base <= 65535 - (n_sites - 1):
            raise LaunchError(f"ports {port_base}..{port_base + n_sites - 1} are not all valid TCP ports")
        self.names = names or [site_name(i + 1) for i in range(n_sites)]
        if len(self.names) != n_sites:
            raise LaunchError(f"{len(self.names)} names given for {n_sites} sites")
        self.host, self.port_base, self.ready_timeout = host, port_base, ready_timeout
        self.temporary = state_dir is None
        self._state_dir = None if state_dir is None else Path(state_dir).resolve()
        self.shards, self.mock_seed, self.mock_rows, self.manual_approval = shards, mock_seed, mock_rows, manual_approval
        self.private = [private] * n_sites if isinstance(private, bool) else list(private)
        if len(self.private) != n_sites:
            raise LaunchError(f"{len(self.private)} privacy settings given for {n_sites} sites")
        if epsilon is not None and not (0 < epsilon < float("inf")):
            raise LaunchError(f"--epsilon must be a positive number, got {epsilon}")
        if delta is not None and not 0 < delta < 1:
            raise LaunchError(f"--delta must be between 0 and 1, got {delta}")
        self.epsilon, self.delta, self.schema = epsilon, delta, schema
        self.limits, self.progress = limits, progress
        self.features = None if features is None or features.name == "none" else features
        self.public_rows = public_rows if isinstance(public_rows, list) else [public_rows] * n_sites
        if len(self.public_rows) != n_sites or any(r is not None and (int(r) != r or r < 1) for r in self.public_rows):
            raise LaunchError(f"--public-rows must be one positive integer, or one per site ({n_sites})")
        if (tls_cert is None) != (tls_key is None):
            raise LaunchError("--tls-cert and --tls-key go together")
        self.tls = tls or tls_cert is not None
        self.tls_files = None
        if tls_cert is not None:
            from .tls import TlsError, load_owner_cert

            try:
                self.tls_files = load_owner_cert(tls_cert, tls_key)
            except TlsError as e:
                raise LaunchError(str(e)) from None
        if not self.tls and not insecure and not _is_loopback(host):
            raise LaunchError(f"binding to {host} without TLS would send passwords and models in clear text: "
                              "add --tls, or --insecure if a TLS proxy sits in front")
        self.sites: list[RunningSite] = []

    @property
    def state_dir(self) -> Path | None:
        """Where the datasites keep their state (for a temporary state: None until :meth:`start`)."""
        return self._state_dir

    @property
    def sites_file(self) -> Path:
        return self.state_dir / SITES_FILE

    def site_dir(self, i: int) -> Path:
        return self.state_dir / f"site-{i + 1}"

    def needs_data(self) -> bool:
        """Whether some site has no dataset yet (so shards must be given)."""
        if self._state_dir is None:
            return True  # a fresh temporary state holds nothing
        return any(not (self.site_dir(i) / "provisioned").exists() for i in range(len(self.names)))

    def start(self) -> Datasites:
        """Start every datasite and wait until all serve; on any failure stop those started and raise."""
        busy = [self.port_base + i for i in range(len(self.names)) if not port_is_free(self.host, self.port_base + i)]
        if busy:
            raise LaunchError(f"port {busy[0]} on {self.host} is already in use (choose another --port-base)")
        if self.temporary:  # made only now, once the ports are known to be free
            self._state_dir = Path(tempfile.mkdtemp(prefix="fedsyft-"))
        _private_dir(self.state_dir)
        try:
            for i, name in enumerate(self.names):
                self.sites.append(self._spawn(i, name))
            self._wait_ready()
            for i, site in enumerate(self.sites):
                site.credentials = dataclasses.replace(site.credentials, privacy=self._public_privacy(site, i),
                                                       tls_fingerprint=site.startup.get("tls_fingerprint"),
                                                       schema=self.schema, features=site.features)
        except BaseException:
            self.stop()
            raise
        write_sites_file(self.sites_file, [s.credentials for s in self.sites])
        return self

    def _spawn(self, i: int, name: str) -> RunningSite:
        state = _private_dir(self.site_dir(i))
        for stale in ("ready.json",):
            (state / stale).unlink(missing_ok=True)
        secrets_file = state / "secrets.json"
        if not secrets_file.exists():
            _write_private(secrets_file, json.dumps(_new_secrets()))
        site_secrets = json.loads(secrets_file.read_text())
        public_rows = self.public_rows[i]  # on a relaunch, read only by a site that has no row count yet
        stored = json.loads((state / "site.json").read_text()) if (state / "site.json").exists() else {}
        features = self._features_of(name, stored)
        if not (state / "provisioned").exists():
            if self.shards is None:
                raise LaunchError(f"{name} has no data yet and no shard was given")
            check_shard(name, self.shards[i], len(self.schema["classes"]) if self.schema else 10)
            public_rows = public_rows or public_row_count(len(self.shards[i]))
            X = self.shards[i].X
            if features is not None:  # the owner maps its images once; the datasite holds the features
                X = self._mapped(name, features, X)
                mock = synthetic_mock(self.shards[i], seed=self.mock_seed + i, rows=self.mock_rows or public_rows)
                np.savez(state / "mock.npz", X=self._mapped(name, features, mock.X, quiet=True), y=mock.y)
            with open(state / "shard.npz", "wb") as f:
                np.savez(f, X=X, y=self.shards[i].y)
            os.chmod(state / "shard.npz", 0o600)
        port = self.port_base + i
        if self.schema is None:  # a tabular site relaunched without --data
            self.schema = stored.get("schema")
        given = self.limits.to_dict() if isinstance(self.limits, WorkLimits) else dict(self.limits or {})
        limits = WorkLimits.from_dict({**stored.get("limits", {}), **given}).to_dict()
        tls = ({"cert": str(Path(self.tls_files.cert).resolve()), "key": str(Path(self.tls_files.key).resolve())}
               if self.tls_files
               else {"self_signed": True} if self.tls else None)
        spec = {"name": name, "host": self.host, "port": port, "parent_pid": os.getpid(),
                "mock_seed": self.mock_seed + i, "mock_rows": self.mock_rows, "manual_approval": self.manual_approval,
                "privacy": self._privacy_spec(i, name, state), "tls": tls, "schema": self.schema,
                "public_rows": public_rows, "limits": limits,
                "features": features.to_dict() if features is not None else None}
        (state / "site.json").write_text(json.dumps(spec, indent=2))
        log = open(state / "server.log", "ab")
        # One BLAS thread per datasite (faster on 2 cores); set before the child loads numpy.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "fedsyft.datasite.server", str(state)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops the sites in order
        )
        log.close()
        url = f"{'https' if self.tls else 'http'}://{self.host}:{port}"
        creds = SiteCredentials(name=name, url=url, email=site_secrets["researcher_email"],
                                password=site_secrets["researcher_password"])
        return RunningSite(name=name, url=url, state=state, process=process, credentials=creds)

    def _features_of(self, name: str, stored: dict) -> Any:
        """The site's feature map: the one its state was provisioned with, which a relaunch must not change."""
        from ..features import FeatureMap

        kept = FeatureMap.from_dict(stored["features"]) if stored.get("features") else None
        if stored and self.features is not None and kept != self.features:
            was = f"the {kept.name!r} feature map" if kept else "raw pixels"
            raise LaunchError(f"{name}: its state folder was provisioned with {was}; relaunch it without a "
                              "feature map option, or launch the new map in another --state")
        return kept if stored else self.features

    def _mapped(self, name: str, features: Any, X: np.ndarray, quiet: bool = False) -> np.ndarray:
        """``X`` through the site's public feature map (one line on bad input: e.g. a table that is not images)."""
        try:
            report = None if quiet or self.progress is None else (lambda done, total: self.progress(name, done, total))
            return features.transform(X, progress=report)
        except ValueError as e:
            raise LaunchError(f"{name}: {e}") from None

    def _privacy_spec(self, i: int, name: str, state: Path) -> dict:
        """What the datasite's guard needs: private or not, and the budget to set (None: keep the stored one)."""
        if not self.private[i]:
            return {"private": False}
        new = not (state / "privacy_ledger.json").exists()
        epsilon = self.epsilon if self.epsilon is not None or not new else DEFAULT_EPSILON_BUDGET
        delta = self.delta if self.delta is not None or not new else DEFAULT_DELTA
        if self.shards is not None and delta is not None and delta >= 1 / len(self.shards[i]):
            raise LaunchError(f"delta {delta:g} is not below 1/n = 1/{len(self.shards[i])} for {name}: "
                              "such a δ allows leaking a whole row; choose a smaller --delta")
        return {"private": True, "epsilon": epsilon, "delta": delta}

    def _public_privacy(self, site: RunningSite, i: int) -> dict:
        """What the connection file tells researchers about a site's privacy (from its ledger, once it serves)."""
        if not self.private[i]:
            return {"private": False}
        p = site.startup.get("privacy", {})
        return {"private": True, "epsilon_budget": p.get("epsilon_budget"), "delta": p.get("delta")}

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        waiting = list(self.sites)
        while waiting:
            for site in list(waiting):
                code = site.process.poll()
                if code is not None:
                    raise LaunchError(f"datasite {site.name!r} exited with code {code} while starting: "
                                      f"{_last_line(site.state / 'server.log')} (log: {site.state / 'server.log'})")
                if (site.state / "ready.json").exists() and serving(site.url):
                    waiting.remove(site)
            if waiting and time.monotonic() > deadline:
                raise LaunchError(f"datasite {waiting[0].name!r} did not answer within {self.ready_timeout:.0f} s "
                                  f"(log: {waiting[0].state / 'server.log'})")
            time.sleep(0.25)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every datasite this object started (SIGTERM, then SIGKILL after ``timeout``)."""
        for site in self.sites:
            if site.process.poll() is None:
                site.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for site in self.sites:
            try:
                site.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                site.process.kill()
                site.process.wait()
        self.sites = []
        if self.temporary and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
        else:
            for i in range(len(self.names)):
                (self.site_dir(i) / "ready.json").unlink(missing_ok=True)

    def __enter__(self) -> Datasites:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serving(url: str) -> bool:
    """Whether a datasite answers at ``url`` (PySyft's metadata route returns 200).

    A liveness check of a process this launcher started, so an HTTPS site's certificate is
    not verified here (researchers pin it: :mod:`fedsyft.pinning`).
    """
    import ssl

    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(f"{url}/api/v2/metadata", timeout=2, context=context) as r:
            return r.status == 200
    except OSError:
        return False


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:300] if lines else "no output"


#: Most rows a datasite may hold: DP-SGD's integer sums stay exact in float64 (below 2**53) up to here.
MAX_ROWS = 10 ** 8


def check_shard(name: str, shard: Images, classes: int) -> None:
    """Check a site's private data once, before it is provisioned: the DP function then never needs to.

    Labels must be class indices below ``classes``, features finite, and the rows at most
    :data:`MAX_ROWS`; :class:`LaunchError` names what is wrong (nothing starts).
    """
    X, y = np.asarray(shard.X), np.asarray(shard.y)
    if X.ndim != 2 or y.shape != (len(X),):
        raise LaunchError(f"{name}: the data must be a 2-D table of features with one label per row")
    if not 1 <= len(y) <= MAX_ROWS:
        raise LaunchError(f"{name}: {len(y)} rows; a datasite holds 1 to {MAX_ROWS:,}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes:
        raise LaunchError(f"{name}: labels must be class indices 0..{classes - 1}")
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        raise LaunchError(f"{name}: the features contain NaN or infinity")


def shard_mnist(mnist: MNIST, n_sites: int, seed: int, partition: str = "iid", **settings) -> list[Images]:
    """Shards of the MNIST training images, one per site: IID, or any :func:`fedsyft.partition.make_partition`."""
    if partition == "iid" and not settings:
        return [mnist.train.subset(idx) for idx in iid(len(mnist.train), n_sites, seed)]
    return [mnist.train.subset(idx) for idx in make_partition(partition, mnist.train.y, n_sites, seed, **settings)]


@dataclass(frozen=True)
class OwnersData:
    """A data owner's tables, ready to launch: one shard per table, the sites' names, the federation's schema."""

    shards: list[Images]
    names: list[str]
    schema: dict
    notice: str = ""  # what became public, when the schema was derived from the tables


def owners_tables(files: list[Path], label: str | None, names: list[str] | None = None,
                  schema_file: Path | None = None) -> OwnersData:
    """Load a data owner's tables (one datasite each) in the federation's public schema.

    With ``schema_file`` every table must fit that schema; without it the schema is derived
    from the tables (their observed ranges become public: ``notice`` says so).
    """
    from ..schema import Schema, derive_common
    from ..tabular import load_table

    if not label:
        raise ParameterError(f"{param('files')} needs {param('label')}, the name of the label column")
    names = list(names or [Path(f).stem for f in files])
    if len(names) != len(files):
        raise ParameterError(f"{len(names)} {param('names')} for {len(files)} {param('files')}: give one name per "
                             "table, or none")
    tables = [load_table(f, label) for f in files]
    notice = ""
    if schema_file is not None:
        schema = Schema.read(schema_file)
        for table in tables:
            schema.check(table)
    else:
        schema, notice = derive_common(tables, name=Path(files[0]).stem)
    return OwnersData([Images(t.X, schema.encode_labels(t)) for t in tables], names, schema.to_dict(), notice)
