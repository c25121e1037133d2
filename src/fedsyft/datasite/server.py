"""One datasite: a PySyft 0.9.5 server in this process, run as ``python -m fedsyft.datasite.server STATE_DIR``.

``fedsyft launch`` starts one such process per datasite. Everything it needs is in
its state folder (written by :mod:`fedsyft.datasite.launch`, mode 0700):

- ``site.json``: name, host, port, dataset name; ``secrets.json`` (0600): server id,
  signing key, admin and researcher credentials; ``shard.npz``: the private data.
- It writes ``syft.sqlite`` and ``blob/`` (PySyft's state, kept across restarts),
  ``audit.jsonl`` (approval decisions, privacy debits and refusals), on a private
  datasite ``privacy_ledger.json`` (see :mod:`fedsyft.privacy.ledger`), and
  ``ready.json`` once it serves.

Why not ``syft.orchestra.launch``: it gives every start a random identity (so no
state survives a restart) and forks a uvicorn child that outlives a killed parent.
Here the server runs in this very process, with a fixed identity and state folder,
and exits when the process that launched it is gone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..connection import ASSET_NAME, DATASET_NAME

if TYPE_CHECKING:
    from ..privacy import PrivacyGuard

ADMIN_EMAIL = "admin@fedsyft.org"
DATASET_INFO = "dataset.json"  # the private data set's public facts (its row count), written at provisioning
INLINE_LIMIT_MB = 1000  # keep assets in sqlite: PySyft's blob reads walk every byte in Python (~6.8 s/call)


def _watch_parent(parent_pid: int, on_orphaned) -> None:
    """Stop this datasite when the launcher is gone, even if it was SIGKILLed."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                on_orphaned()
                time.sleep(5)
                os._exit(1)  # graceful stop did not finish
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _provision(root, spec: dict, secrets: dict, state: Path) -> None:
    """First start only: researcher account, no guest sign-up, upload the shard with its mock."""
    import numpy as np
    import syft as sy

    from ..data import Images
    from ..mock import synthetic_mock

    root.users.create(name="Researcher", email=secrets["researcher_email"],
                      password=secrets["researcher_password"], password_verify=secrets["researcher_password"])
    root.settings.allow_guest_signup(enable=False)
    with np.load(state / "shard.npz", allow_pickle=False) as f:
        shard = Images(f["X"], f["y"])
    schema = spec.get("schema")
    public_rows = int(spec["public_rows"])  # what the site says of its size: never the exact count
    if (state / "mock.npz").exists():  # the launcher mapped synthetic images through the public feature map
        with np.load(state / "mock.npz", allow_pickle=False) as f:
            mock = Images(f["X"], f["y"])
    else:
        mock = synthetic_mock(shard, seed=int(spec["mock_seed"]), rows=spec.get("mock_rows") or public_rows,
                              schema=schema)
    features = spec.get("features")
    what = (f"private rows of {len(schema['features'])} numeric features and {len(schema['classes'])} classes "
            f"(X float32, y int64: class indices into the schema's classes)" if schema
            else f"private MNIST images through the public feature map {features} (X uint8 "
                 f"[n, {shard.X.shape[1]}], y int64 [n])" if features
            else "private MNIST images (X uint8 [n, 784], y int64 [n])")
    root.upload_dataset(sy.Dataset(
        name=DATASET_NAME,
        description=f"{spec['name']}: about {public_rows:,} {what}; the mock is {len(mock)} rows of random noise "
                    "with the same columns, dtypes and label set.",
        asset_list=[sy.Asset(name=ASSET_NAME, data=(shard.X, shard.y), mock=(mock.X, mock.y))],
    ))
    # The public row count (the description says it, every call returns it as n_train); the
    # privacy guard's status reports it so that researchers can size DP-SGD's batches.
    (state / DATASET_INFO).write_text(json.dumps({"public_rows": public_rows}))


def _privacy_guard(state: Path, spec: dict, audit) -> PrivacyGuard:
    """Open (or create) the privacy ledger and the guard that charges it.

    Raises :class:`~fedsyft.privacy.LedgerError` when the ledger cannot be trusted: the
    datasite then does not serve at all (fail closed).
    """
    from ..privacy import PrivacyGuard, PrivacyLedger
    from ..privacy.ledger import LEDGER_FILE

    settings = spec["privacy"]
    marker = state / "privacy_enabled"  # once a ledger existed, a missing one is a loss, not a fresh start
    ledger, what = PrivacyLedger.open_or_create(state / LEDGER_FILE, settings.get("epsilon"), settings.get("delta"),
                                               DATASET_NAME, create=not marker.exists())
    marker.touch()
    try:
        info = json.loads((state / DATASET_INFO).read_text())
        # Provisioned by an earlier fedsyft, which published the exact count: that one stays the public one.
        rows = int(info.get("public_rows", info.get("rows")))
    except (OSError, ValueError, KeyError, TypeError):  # older still: the owner declares one (--public-rows)
        rows = spec.get("public_rows")
        if rows is not None:
            (state / DATASET_INFO).write_text(json.dumps({"public_rows": int(rows)}))
    schema = spec.get("schema")
    guard = PrivacyGuard(ledger, record=audit.event, rows=rows, classes=len(schema["classes"]) if schema else 10)
    guard.note("privacy_budget", detail=what)
    return guard


def _install_gate(spec: dict, assets: list, audit, guard, state: Path) -> dict:
    """Put the owner's work limits (and, on a private site, the privacy guard) around PySyft's code execution."""
    from ..limits import WorkLimits
    from .approval import DP_FUNCTION_NAME, training_code_sha256
    from .execution_guard import install, mock_identity

    limits = WorkLimits.from_dict(spec.get("limits"))
    [asset] = assets
    # The mock's identity is kept in the state: PySyft loads the private data with the mock (1 s more per
    # start for 30,000 rows of 3,969 features), and neither changes after provisioning.
    kept = state / "mock_identity.json"
    try:
        identity = json.loads(kept.read_text())
        if not isinstance(identity, dict) or set(identity) != {"shapes", "digest"}:
            raise ValueError(f"{kept} is not a mock identity")
    except (OSError, ValueError):
        with contextlib.redirect_stdout(io.StringIO()):
            identity = mock_identity(asset.mock)
        kept.write_text(json.dumps(identity))
    install(limits, identity, audit.event, guard, training_code_sha256(DP_FUNCTION_NAME) if guard else None)
    return limits.to_dict()


def serve(state: Path) -> None:
    started = time.perf_counter()
    import logging

    import uvicorn
    from fastapi import APIRouter, FastAPI
    from syft.server.credentials import SyftSigningKey
    from syft.server.datasite import Datasite
    from syft.server.routes import make_routes
    from syft.store.blob_storage.on_disk import OnDiskBlobStorageClientConfig, OnDiskBlobStorageConfig
    from syft.types.uid import UID

    from .approval import ApprovalPolicy, Approver, AuditLog, revoke_stale

    timings = {"import_seconds": round(time.perf_counter() - started, 3)}
    spec = json.loads((state / "site.json").read_text())
    secrets = json.loads((state / "secrets.json").read_text())
    worker = Datasite(
        name=spec["name"],
        id=UID(secrets["server_id"]),
        signing_key=SyftSigningKey.from_string(secrets["signing_key"]),
        root_email=ADMIN_EMAIL,
        root_password=secrets["admin_password"],
        reset=False,
        deployment_type="remote",
        db_url=f"sqlite:///{state}/syft.sqlite",
        blob_storage_config=OnDiskBlobStorageConfig(
            min_blob_size=INLINE_LIMIT_MB,
            client_config=OnDiskBlobStorageClientConfig(base_directory=state / "blob"),
        ),
    )
    timings["worker_seconds"] = round(time.perf_counter() - started, 3)
    with contextlib.redirect_stdout(io.StringIO()):  # PySyft prints banners and notices
        root = worker.root_client
        if not (state / "provisioned").exists():
            t = time.perf_counter()
            _provision(root, spec, secrets, state)
            timings["provision_seconds"] = round(time.perf_counter() - t, 3)
            (state / "provisioned").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            (state / "shard.npz").unlink()  # the datasite's database holds the data now
            (state / "mock.npz").unlink(missing_ok=True)
        # Only the training asset may be bound: data the owner uploads later stays out of reach.
        assets = [a for d in root.datasets.get_all() if d.name == DATASET_NAME for a in d.assets if a.name == ASSET_NAME]
    timings["assets_seconds"] = round(time.perf_counter() - started, 3)
    private = bool(spec.get("privacy", {}).get("private", False))
    policy = ApprovalPolicy.for_site(str(worker.id), frozenset(str(a.action_id) for a in assets), private)
    audit = AuditLog(state / "audit.jsonl")
    revoke_stale(root, policy, audit)  # code approved under an earlier fedsyft: denied before serving
    guard = _privacy_guard(state, spec, audit) if private else None
    if guard is not None:
        timings["privacy"] = guard.status()
    else:
        audit.event("privacy_off", {"detail": "launched with --no-dp: models and local metrics leave this "
                                              "datasite without differential privacy"})
    gate_started = time.perf_counter()
    timings["limits"] = _install_gate(spec, assets, audit, guard, state)
    timings["gate_seconds"] = round(time.perf_counter() - gate_started, 3)
    approver = None
    if not spec.get("manual_approval", False):
        approver = Approver(root, policy, audit)
        approver.start()

    # Import what the approved function imports now, not inside the first round's call.
    import scipy.optimize  # noqa: F401

    app = FastAPI(title=spec["name"])
    router = APIRouter()
    router.include_router(make_routes(worker=worker))
    app.include_router(router, prefix="/api/v2")
    ssl = {}
    if spec.get("tls"):
        from .tls import ensure_self_signed, load_owner_cert, uvicorn_ssl_kwargs

        tls = spec["tls"]
        files = (load_owner_cert(tls["cert"], tls["key"]) if tls.get("cert")
                 else ensure_self_signed(spec["host"], state))  # kept in the state: the pin survives restarts
        ssl = uvicorn_ssl_kwargs(files)
        timings["tls_fingerprint"] = files.fingerprint
    # A TLS connection a client keeps alive would hold a stop for uvicorn's 30 s SSL shutdown timeout.
    server = uvicorn.Server(uvicorn.Config(app, host=spec["host"], port=int(spec["port"]), log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5, **ssl))

    def stop() -> None:
        server.should_exit = True

    _watch_parent(int(spec["parent_pid"]), stop)

    # ready.json tells the launcher this datasite is provisioned and about to serve.
    timings["ready_seconds"] = round(time.perf_counter() - started, 3)
    (state / "ready.json").write_text(json.dumps({"pid": os.getpid(), "server_id": str(worker.id), **timings}))
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    server.run()  # handles SIGINT/SIGTERM: stops accepting, finishes calls, returns
    if approver is not None:
        approver.stopped.set()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m fedsyft.datasite.server STATE_DIR")
    os.environ["TQDM_DISABLE"] = "1"  # before PySyft loads: no progress bars in the log
    from ..privacy.ledger import LedgerError
    from .tls import TlsError

    try:
        serve(Path(sys.argv[1]).resolve())
    except (LedgerError, TlsError) as e:  # fail closed: no trustworthy ledger or certificate, no serving
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
