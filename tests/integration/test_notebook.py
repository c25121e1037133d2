"""Runs notebooks/federated_mnist.ipynb top to bottom against real datasites (small shards)."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL_SHARD, free_port_base

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "federated_mnist.ipynb"
N_SITES = 2
ROUNDS = 5


def _text(nb) -> str:
    """Everything the notebook printed (streams and text/plain results), in cell order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
            elif out.get("output_type") == "error":
                parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "\n".join(parts)


def _wait_ports_free(ports: list[int], timeout: float) -> list[int]:
    from fedsyft.datasite.launch import port_is_free

    deadline = time.monotonic() + timeout
    while True:
        busy = [p for p in ports if not port_is_free("127.0.0.1", p)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.5)


def _stop_leaked_datasites(ports: list[int]) -> list[int]:
    """SIGTERM datasite processes listening on ``ports`` (only those); returns their pids."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "fedsyft.datasite.server" not in " ".join(proc.info["cmdline"] or []):
                continue
            if any(c.laddr and c.laddr.port in ports and c.status == psutil.CONN_LISTEN
                   for c in proc.net_connections(kind="inet")):
                proc.send_signal(signal.SIGTERM)
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=15)
    return pids


def test_notebook_runs_end_to_end(tmp_path):
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), \
        "the notebook is committed with outputs"

    port_base = free_port_base(N_SITES)
    ports = [port_base + i for i in range(N_SITES)]
    env = {"FEDSYFT_NOTEBOOK_ROWS": str(SMALL_SHARD), "FEDSYFT_NOTEBOOK_PORT": str(port_base)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        # The closing cell stops the datasites; if a cell failed, the kernel's atexit hook
        # does, and each datasite also exits once the kernel is gone (within ~5 s).
        busy = _wait_ports_free(ports, timeout=30)
        leaked = _stop_leaked_datasites(busy) if busy else []
        assert not busy, f"datasites still listening on {busy} after the notebook ran (sent SIGTERM to {leaked})"

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = _text(nb)

    # The "python3" kernel ran the interpreter running this test (jupyter_client maps the
    # kernelspec's "python" to sys.executable), so the datasites it starts use it too.
    assert f"({sys.executable})" in text
    assert f"rows per datasite: [{SMALL_SHARD}, {SMALL_SHARD}]" in text
    # The private asset was refused; the mock was not.
    assert "site.asset.data -> None" in text
    assert "reading the asset by id: refused" in text
    assert "mock: X uint8 (1000, 784)" in text
    # Approval on both datasites, and the audit log agrees.
    assert text.count("code request approved") == N_SITES
    assert "approved hash matches local_train: True" in text
    assert '"decision": "approved"' in text
    # One local round on one datasite.
    assert f"trained on {int(SMALL_SHARD * 0.9):,} rows" in text
    # ROUNDS rounds, each with a line per site and a final line.
    finished = re.findall(r"^round (\d+)/(\d+) finished: global test accuracy ([0-9.]+)", text, re.M)
    assert [(int(r), int(n)) for r, n, _ in finished] == [(i, ROUNDS) for i in range(1, ROUNDS + 1)]
    assert len(re.findall(r"^  MNIST Part \d: local test accuracy", text, re.M)) == N_SITES * ROUNDS
    final = float(re.search(r"federated global test accuracy after 5 rounds: ([0-9.]+)", text).group(1))
    assert final == pytest.approx(float(finished[-1][2]))
    assert final > 0.85
    central = float(re.search(r"Centralized on the same [\d,]+ rows: +test accuracy ([0-9.]+)", text).group(1))
    assert central > 0.85
    assert "ports free again: True" in text

    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # mock images, one-round confusion matrix, accuracy per round, confusion matrices
    run_dir = tmp_path / "runs" / "notebook"
    assert (run_dir / "metrics.json").exists() and (run_dir / "model.npz").exists()
