"""The fedsyft command as a user runs it: real subprocesses, real datasites on free loopback ports."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port_base

from fedsyft.datasite.launch import DEFAULT_PORT_BASE as DEFAULT_PORT
from fedsyft.datasite.launch import port_is_free

ENV = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}


def fedsyft(*args, timeout=300, cwd=None):
    return subprocess.run([sys.executable, "-m", "fedsyft", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=cwd)


def fedsyft_here(*args):
    """``fedsyft ARGS`` run in this process: a subprocess's exit code and output, without paying PySyft's
    import (5-13 s) again. For commands that start no servers (run, requests, approve, budget)."""
    import contextlib
    import io

    from fedsyft.cli import main

    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = ["fedsyft", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def data_dir(mnist, tmp_path_factory):
    """A small standard-format MNIST (mnist.npz): 6,000 training and 1,000 test images."""
    d = tmp_path_factory.mktemp("mnist")
    np.savez(d / "mnist.npz", x_train=mnist.train.X[:6000].reshape(-1, 28, 28), y_train=mnist.train.y[:6000],
             x_test=mnist.test.X[:1000].reshape(-1, 28, 28), y_test=mnist.test.y[:1000])
    return d


@pytest.mark.parametrize("args, fragments", [
    (["simulate", "--rounds", "0"], ["--rounds", "x>=1"]),
    (["run", "--rounds", "-2"], ["--rounds"]),
    (["simulate", "--partition", "stripes"], ["--partition"]),
    (["simulate", "--l2", "0"], ["l2 must be positive"]),
    (["run", "--sites-file", "/nonexistent/sites.json"], ["does not exist"]),
    (["launch", "--port-base", "70000"], ["--port-base"]),
    (["report", "/nonexistent/run"], ["metrics.json does not exist"]),
    (["frobnicate"], ["No such command"]),
])
def test_bad_input_gets_one_error_line(args, fragments):
    assert_one_line_error(fedsyft(*args, timeout=60), *fragments)


def test_malformed_sites_file(tmp_path):
    bad = tmp_path / "sites.json"
    bad.write_text('{"sites": [{"name": "a"}]}')
    assert_one_line_error(fedsyft("run", "--sites-file", bad, timeout=60), "needs non-empty strings")


def test_simulate_prints_seed_compatible_lines_and_writes_outputs(data_dir, tmp_path):
    out = tmp_path / "run"
    result = fedsyft("simulate", "--rounds", 2, "--data-dir", data_dir, "--out", out)
    assert result.returncode == 0, result.stderr
    for line in ("=== FL epoch 1/2 ===", "  MNIST Part 1 -> train=", "  MNIST Part 2 -> train=",
                 "  FedAvg epoch 2: intercept shape=(10,), coef shape=(10, 784)", "  Global model -> test=",
                 "Global test accuracy after 2 rounds: "):
        assert line in result.stdout
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "config.json", "model.npz", "checkpoint.npz",
                                               "accuracy.png", "confusion_matrices.png", "report.html"}
    (out / "report.html").unlink()
    rebuilt = fedsyft("report", out, timeout=60)
    assert rebuilt.returncode == 0 and "report.html" in rebuilt.stdout and (out / "report.html").exists()


def test_bad_data_is_refused_before_any_datasite_starts(tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    state = tmp_path / "state"
    result = fedsyft("launch", "--data-dir", bad, "--state", state, "--port-base", free_port_base(2), timeout=60)
    assert_one_line_error(result, "train-images-idx3-ubyte.gz")
    assert not (state / "site-1").exists()


class Launched:
    """``fedsyft launch`` running in the background, its stdout collected line by line.

    ``prefix`` runs it under another command, e.g. ``ip netns exec NAME``.
    """

    def __init__(self, *args, prefix=()):
        self.process = subprocess.Popen([*prefix, sys.executable, "-m", "fedsyft", "launch", *map(str, args)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise AssertionError(f"launch exited {self.process.returncode}: {self.process.stderr.read()}")
                continue
            self.stdout.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout} s; got {self.stdout}")


@pytest.mark.integration
def test_launch_serves_a_researcher_and_stops_cleanly_on_sigterm(data_dir, tmp_path):
    port = free_port_base(2)
    state = tmp_path / "state"
    launch = Launched("--sites", 2, "--port-base", port, "--state", state, "--data-dir", data_dir, "--no-dp")
    try:
        launch.wait_for("Press Ctrl-C")
        assert "2 DataSites Up and Running." in launch.stdout
        assert f"  1. MNIST Part 1: http://127.0.0.1:{port}  [NOT private: --no-dp]" in launch.stdout
        assert f"  2. MNIST Part 2: http://127.0.0.1:{port + 1}  [NOT private: --no-dp]" in launch.stdout
        assert json.loads((state / "sites.json").read_text())["sites"][0]["privacy"] == {"private": False}
        audit = [json.loads(line) for line in (state / "site-1" / "audit.jsonl").read_text().splitlines()]
        assert audit[0]["event"] == "privacy_off"  # the opt-out is on record
        sites_file = state / "sites.json"
        assert stat.S_IMODE(sites_file.stat().st_mode) == 0o600
        pids = [json.loads((state / f"site-{i}" / "ready.json").read_text())["pid"] for i in (1, 2)]

        # a second launch on the same ports is refused without disturbing the first
        assert_one_line_error(fedsyft("launch", "--port-base", port, "--data-dir", data_dir, timeout=60),
                              f"port {port}", "already in use")

        out = tmp_path / "run"
        result = fedsyft("run", "--sites-file", sites_file, "--rounds", 2, "--data-dir", data_dir, "--out", out)
        assert result.returncode == 0, result.stderr
        assert "=== FL epoch 2/2 ===" in result.stdout and "  MNIST Part 2 -> train=" in result.stdout
        doc = json.loads((out / "metrics.json").read_text())
        assert len(doc["rounds"]) == 2 and doc["final"]["global_test_accuracy"] > 0.85
        assert all(s["n_train"] == 2700 for s in doc["rounds"][0]["sites"].values())
        # credentials never reach the run's files
        password = json.loads(sites_file.read_text())["sites"][0]["password"]
        assert not any(password.encode() in p.read_bytes() for p in out.iterdir())  # metrics, report, plots

        wrong = tmp_path / "wrong.json"
        doc = json.loads(sites_file.read_text())
        doc["sites"][0]["password"] = "wrong"
        wrong.write_text(json.dumps(doc))
        assert_one_line_error(fedsyft("run", "--sites-file", wrong, "--rounds", 1, "--data-dir", data_dir),
                              "MNIST Part 1", "wrong email or password")
    finally:
        launch.process.send_signal(signal.SIGTERM)
        code = launch.process.wait(timeout=60)
    assert code == 0
    assert port_is_free("127.0.0.1", port) and port_is_free("127.0.0.1", port + 1)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.integration
def test_demo_runs_everything_and_leaves_nothing_running(data_dir, tmp_path):
    port = free_port_base(2)
    out = tmp_path / "demo"
    result = fedsyft("demo", "--rounds", 1, "--port-base", port, "--data-dir", data_dir, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "2 DataSites Up and Running." in result.stdout
    assert "=== FL epoch 1/1 ===" in result.stdout and "Datasites stopped." in result.stdout
    assert json.loads((out / "metrics.json").read_text())["final"]["global_test_accuracy"] > 0.8
    assert port_is_free("127.0.0.1", port) and port_is_free("127.0.0.1", port + 1)


@pytest.mark.integration
def test_datasites_die_with_a_killed_launch_and_state_is_reused(data_dir, tmp_path):
    from fedsyft.connection import read_sites_file
    from fedsyft.experiment import connect_sites

    port = free_port_base(1)
    state = tmp_path / "state"
    launch = Launched("--sites", 1, "--port-base", port, "--state", state, "--data-dir", data_dir, "--mock-rows", 0,
                      "--no-dp")
    launch.wait_for("Press Ctrl-C")
    first = json.loads((state / "site-1" / "ready.json").read_text())
    assert "provision_seconds" in first  # first start uploads the shard
    credentials = read_sites_file(state / "sites.json")
    [site] = connect_sites(credentials)
    assert site.asset.mock[0].shape == (6000, 784)  # --mock-rows 0: a full-size mock
    site.submit()
    site.wait_for_approval(timeout=30)

    launch.process.kill()  # SIGKILL: the launcher cannot clean up; the datasite must notice by itself
    launch.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{first['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{first['pid']}").exists(), "datasite outlived its killed launcher"
    assert port_is_free("127.0.0.1", port)

    again = Launched("--sites", 1, "--port-base", port, "--state", state, "--data-dir", data_dir, "--no-dp")
    try:
        again.wait_for("Press Ctrl-C")
        second = json.loads((state / "site-1" / "ready.json").read_text())
        assert "provision_seconds" not in second  # no re-upload: the dataset survived
        assert read_sites_file(state / "sites.json") == credentials  # same accounts
        [site] = connect_sites(credentials)
        assert site.request_status() == ("approved", "")  # the approval survived the restart
        result = site.train(None, {"seed": 0, "test_fraction": 0.1, "local_iters": 2, "l2": 1e-5})
        assert result.n_train == 5400  # one site holds all 6,000 rows, 10 % held out
    finally:
        again.process.send_signal(signal.SIGTERM)
        assert again.process.wait(timeout=60) == 0
    assert port_is_free("127.0.0.1", port)


def test_json_and_quiet_modes(data_dir, tmp_path):
    result = fedsyft("simulate", "--rounds", 2, "--local-iters", 5, "--data-dir", data_dir, "--out", tmp_path / "j", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert summary["rounds_completed"] == 2 and summary["run_dir"] == str(tmp_path / "j")
    assert summary["final_global_test_accuracy"] == summary["global_test_accuracy_per_round"][-1]
    assert "=== FL epoch 1/2 ===" in result.stderr  # the round lines moved to stderr
    quiet = fedsyft("simulate", "--rounds", 2, "--local-iters", 5, "--data-dir", data_dir, "--out", tmp_path / "q", "-q")
    assert quiet.returncode == 0 and quiet.stdout.splitlines()[0].startswith("Global test accuracy after 2 rounds: ")
    assert len(quiet.stdout.splitlines()) == 2 and "FL epoch" not in quiet.stdout


def test_a_killed_simulation_resumes_to_the_same_model(data_dir, tmp_path):
    args = ["--rounds", 12, "--local-iters", 10, "--data-dir", data_dir]
    straight = fedsyft("simulate", *args, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "fedsyft", "simulate", *map(str, args), "--out", str(out)],
                               stdout=subprocess.PIPE, text=True, env=ENV)
    import psutil

    for line in process.stdout:
        if "=== FL epoch 4/12 ===" in line:
            workers = psutil.Process(process.pid).children()
            process.kill()  # the researcher's process dies mid-run
            break
    process.wait(timeout=30)
    assert workers  # the simulation's worker processes leave with it
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, alive
    from fedsyft.run_dir import load_checkpoint

    # The checkpoint is what --resume reads; the kill may land after it and before metrics.json is rewritten.
    done = len(load_checkpoint(out)[0].rounds)
    assert 3 <= done < 12
    resumed = fedsyft("simulate", "--resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"=== FL epoch {done + 1}/12 ===" in resumed.stdout and "=== FL epoch 1/12 ===" not in resumed.stdout
    a, b = np.load(tmp_path / "straight" / "model.npz"), np.load(out / "model.npz")
    assert np.array_equal(a["coef"], b["coef"]) and np.array_equal(a["intercept"], b["intercept"])
    assert json.loads((out / "metrics.json").read_text())["final"]["rounds_completed"] == 12
    again = fedsyft("simulate", "--resume", out)
    assert_one_line_error(again, "nothing to do")


@pytest.mark.integration
def test_manual_approval_by_the_data_owner(data_dir, tmp_path):
    from test_datasites import _wrap, steal_rows

    from fedsyft.connection import read_sites_file
    from fedsyft.experiment import connect_sites

    port = free_port_base(1)
    state = tmp_path / "state"
    launch = Launched("--sites", 1, "--port-base", port, "--state", state, "--data-dir", data_dir, "--manual-approval")
    try:
        launch.wait_for("Press Ctrl-C")
        assert any("fedsyft requests --state" in line for line in launch.stdout)
        [site] = connect_sites(read_sites_file(state / "sites.json"))
        site.submit(name="local_train_dp")  # the site is private (the default): its function is the DP one
        time.sleep(1.5)
        assert site.request_status("local_train_dp")[0] == "pending"  # nothing approves it automatically
        listed = fedsyft_here("requests", "--state", state, "--source")
        assert listed.returncode == 0, listed.stderr
        assert "local_train_dp" in listed.stdout and "approve" in listed.stdout and "def local_train_dp" in listed.stdout
        [training] = [r for r in site.client.requests.get_all() if r.code.service_func_name == "local_train_dp"]
        approved = fedsyft_here("approve", str(training.id)[:10], "--state", state)
        assert approved.returncode == 0 and "Approved request" in approved.stdout, approved.stderr
        site.wait_for_approval(timeout=10, function_name="local_train_dp")

        site.submit(_wrap(site, steal_rows))
        time.sleep(1.0)
        [foreign] = [r for r in site.client.requests.get_all() if r.code.service_func_name == "steal_rows"]
        refused = fedsyft_here("approve", str(foreign.id), "--state", state)
        assert_one_line_error(refused, "the policy would deny", "--force")
        denied = fedsyft_here("approve", str(foreign.id), "--state", state, "--deny", "--reason", "not our code")
        assert denied.returncode == 0, denied.stderr
        status, reason = site.request_status("steal_rows")
        assert status == "denied" and "not our code" in reason
        decisions = [d for d in map(json.loads, (state / "site-1" / "audit.jsonl").read_text().splitlines())
                     if "decision" in d]
        assert [(d["function"], d["decision"]) for d in decisions] == [("local_train_dp", "approved"),
                                                                         ("steal_rows", "denied")]
        assert all(d["reason"].startswith("manual: ") for d in decisions)
        assert fedsyft_here("requests", "--state", state).stdout.strip() == "No pending code requests."

        # credentials never reach logs or process arguments
        secrets = json.loads((state / "site-1" / "secrets.json").read_text())
        server_pid = json.loads((state / "site-1" / "ready.json").read_text())["pid"]
        for pid in (server_pid, launch.process.pid):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert secrets["admin_password"] not in cmdline and secrets["researcher_password"] not in cmdline
        log = (state / "site-1" / "server.log").read_text(errors="replace")
        assert secrets["admin_password"] not in log and secrets["researcher_password"] not in log
    finally:
        launch.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert launch.process.wait(timeout=60) == 0
    assert port_is_free("127.0.0.1", port)


@pytest.mark.integration
def test_a_private_launch_enforces_its_budget_through_the_cli(data_dir, tmp_path):
    """launch is private by default; run needs --epsilon; the site refuses a plan over its budget; budget shows it."""
    port = free_port_base(1)
    state = tmp_path / "state"
    launch = Launched("--sites", 1, "--port-base", port, "--state", state, "--data-dir", data_dir, "--epsilon", 3)
    try:
        launch.wait_for("Press Ctrl-C")
        assert f"  1. MNIST Part 1: http://127.0.0.1:{port}  [private: ε budget 3 at δ=1e-05]" in launch.stdout
        sites_file = state / "sites.json"
        assert_one_line_error(fedsyft_here("run", "--sites-file", sites_file, "--data-dir", data_dir),
                              "MNIST Part 1 is private", "pass --epsilon")
        out = tmp_path / "run"
        result = fedsyft_here("run", "--sites-file", sites_file, "--rounds", 2, "--epsilon", 2, "--data-dir", data_dir,
                         "--out", out)
        assert result.returncode == 0, result.stderr
        assert "  MNIST Part 1 -> metrics withheld (DP), ε spent" in result.stdout
        assert "Training function local_train_dp approved" in result.stdout
        site = json.loads((out / "metrics.json").read_text())["rounds"][-1]["sites"]["MNIST Part 1"]
        assert 0 < site["epsilon_spent"] <= 2.0 and site["epsilon_budget"] == 3.0 and site["test_accuracy"] is None
        assert "<h2>Privacy</h2>" in (out / "report.html").read_text()

        over = fedsyft_here("run", "--sites-file", sites_file, "--rounds", 5, "--epsilon", 3, "--data-dir", data_dir,
                       "--out", tmp_path / "over")
        assert_one_line_error(over, "MNIST Part 1", "does not fit this site's privacy budget", "remaining")

        shown = fedsyft_here("budget", "--state", state)
        assert shown.returncode == 0, shown.stderr
        assert "MNIST Part 1" in shown.stdout and f"{site['epsilon_spent']:.3f}" in shown.stdout
    finally:
        launch.process.send_signal(signal.SIGTERM)
        assert launch.process.wait(timeout=60) == 0
    audit = [json.loads(line) for line in (state / "site-1" / "audit.jsonl").read_text().splitlines()]
    assert sum(e.get("event") == "privacy_debit" for e in audit) == 2


def test_simulate_private_runs_and_bad_privacy_options_get_one_line(data_dir, tmp_path):
    out = tmp_path / "dp"
    result = fedsyft("simulate", "--rounds", 2, "--epsilon", 4, "--data-dir", data_dir, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "metrics withheld (DP), ε spent" in result.stdout and "Privacy: up to ε=" in result.stdout
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["config"]["privacy"]["epsilon"] == 4 and doc["final"]["global_test_accuracy"] > 0.5
    assert_one_line_error(fedsyft("simulate", "--epsilon", 0, timeout=60), "--epsilon")
    assert_one_line_error(fedsyft("launch", "--no-dp", "--epsilon", 2, timeout=60), "--no-dp")


def test_simulate_with_a_strategy_sampling_and_a_skewed_partition(data_dir, tmp_path):
    out = tmp_path / "skewed"
    result = fedsyft("simulate", "--sites", 10, "--partition", "pathological", "--classes-per-client", 2,
                     "--strategy", "fedadam", "--server-lr", 0.03, "--clients-per-round", 0.4, "--rounds", 2,
                     "--local-iters", 3, "--ema", 0.9, "--data-dir", data_dir, "--out", out)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["config"]["strategy_settings"]["strategy"] == "fedadam" and doc["config"]["partition"] == "pathological"
    assert doc["config"]["clients_per_round"] == 0.4  # a fraction of the 10 sites: 4 a round
    assert doc["config"]["strategy_settings"]["ema"] == 0.9 and "FedAdam + EMA 0.9" in (out / "report.html").read_text()
    assert all(len(r["sampled"]) == 4 and sorted(r["sites"]) == sorted(r["sampled"]) for r in doc["rounds"])
    assert all(sum(c > 0 for c in counts) == 2 for counts in doc["config"]["label_counts"].values())
    assert (out / "label_histogram.png").exists()


def test_a_thousand_sites_write_readable_outputs(data_dir, tmp_path):
    out = tmp_path / "many"
    result = fedsyft("simulate", "--sites", 1000, "--clients-per-round", 10, "--rounds", 2, "--local-iters", 2,
                     "--data-dir", data_dir, "--out", out, "-q")
    assert result.returncode == 0, result.stderr
    from matplotlib.image import imread

    for png in ("accuracy.png", "confusion_matrices.png", "label_histogram.png"):
        height, width = imread(out / png).shape[:2]
        assert width <= 2000 and height <= 2000, png


@pytest.mark.parametrize("args, fragments", [
    (["simulate", "--partition", "dirichlet", "--sites", 1000, "--min-size", 10], ["--min-size"]),
    (["simulate", "--partition", "pathological", "--sites", 3, "--classes-per-client", 2], ["--classes-per-client"]),
    (["simulate", "--strategy", "fedavg", "--mu", 0.1], ["fedavg does not take mu"]),
    (["simulate", "--strategy", "fedsgd"], ["--strategy"]),
    (["simulate", "--ema", 1], ["--ema"]),
    (["simulate", "--clients-per-round", 2.5], ["--clients-per-round", "2.5"]),
    (["simulate", "--sites", 10001], ["--sites"]),
])
def test_bad_strategy_and_partition_options_get_one_line(data_dir, args, fragments):
    assert_one_line_error(fedsyft(*args, "--data-dir", data_dir, timeout=60), *fragments)


def _clinic_files(folder: Path) -> dict:
    """Two "clinics'" halves of scikit-learn's breast-cancer table, a held-out quarter, and a declared schema."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame["diagnosis"] = frame["diagnosis"].map({0: "malignant", 1: "benign"})
    train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=frame["diagnosis"])
    features = [c for c in frame.columns if c != "diagnosis"]
    files = {"a": folder / "clinic_a.csv", "b": folder / "clinic_b.csv", "test": folder / "test.csv",
             "schema": folder / "schema.json"}
    train.iloc[: len(train) // 2].to_csv(files["a"], index=False)
    train.iloc[len(train) // 2:].to_csv(files["b"], index=False)
    test.to_csv(files["test"], index=False)
    files["schema"].write_text(json.dumps({  # declared ranges: nothing observed in a clinic's rows is published
        "name": "breast cancer", "features": features, "classes": ["benign", "malignant"],
        "ranges": {f: [0.0, float(frame[f].max()) * 1.5] for f in features}}))
    return files


@pytest.mark.integration
def test_two_clinics_own_tables_over_tls(tmp_path):
    """Two owners, two CSVs, two launches with --tls; the researcher joins both files, pins both certificates."""
    files = _clinic_files(tmp_path)
    ports = free_port_base(2)
    assert_one_line_error(fedsyft("launch", "--host", "0.0.0.0", "--port-base", ports, timeout=60),
                          "without TLS", "--tls")
    clinics = [Launched("--data", files[key], "--label", "diagnosis", "--name", f"Clinic {key.upper()}", "--schema",
                        files["schema"], "--state", tmp_path / key, "--port-base", ports + i, "--tls", "--no-dp")
               for i, key in enumerate("ab")]
    try:
        for clinic in clinics:
            clinic.wait_for("Press Ctrl-C")
        sites_files = [tmp_path / key / "sites.json" for key in "ab"]
        [entry] = json.loads(sites_files[0].read_text())["sites"]
        assert entry["url"] == f"https://127.0.0.1:{ports}" and len(entry["tls_fingerprint"]) == 64
        assert entry["schema"]["classes"] == ["benign", "malignant"]
        assert any(entry["tls_fingerprint"] in line for line in clinics[0].stdout)
        out = tmp_path / "run"
        args = ["--sites-file", sites_files[0], "--sites-file", sites_files[1], "--test", files["test"],
                "--label", "diagnosis"]
        result = fedsyft_here("run", *args, "--rounds", 3, "--out", out)
        assert result.returncode == 0, result.stderr
        assert "  Clinic B -> train=" in result.stdout and "coef shape=(2, 30)" in result.stdout
        assert json.loads((out / "metrics.json").read_text())["final"]["global_test_accuracy"] >= 0.93
        unscored = fedsyft_here("run", "--sites-file", sites_files[0], "--rounds", 1, "--out", tmp_path / "unscored")
        assert unscored.returncode == 0, unscored.stderr  # no --test: only what the sites release is reported
        assert "not scored (no --test set)" in unscored.stdout and "  Clinic A -> train=" in unscored.stdout
        assert json.loads((tmp_path / "unscored" / "metrics.json").read_text())["final"]["global_test_accuracy"] is None

        forged = tmp_path / "forged.json"
        doc = json.loads(sites_files[1].read_text())
        doc["sites"][0]["tls_fingerprint"] = "ab" * 32
        forged.write_text(json.dumps(doc))
        assert_one_line_error(fedsyft_here("run", "--sites-file", sites_files[0], "--sites-file", forged, *args[4:],
                                      "--rounds", 1), "Clinic B", "certificate fingerprint", "nothing was sent")
        owner = fedsyft_here("requests", "--state", tmp_path / "a")  # the owner's own tools pin the certificate too
        assert owner.returncode == 0 and "No pending code requests." in owner.stdout, owner.stderr
    finally:
        for clinic in clinics:
            clinic.process.send_signal(signal.SIGTERM)
        assert all(clinic.process.wait(timeout=60) == 0 for clinic in clinics)
    assert port_is_free("127.0.0.1", ports) and port_is_free("127.0.0.1", ports + 1)


class NetworkNamespaces:
    """Two network namespaces joined by a veth pair: a datasite "host" and a researcher "host".

    Made by the test (root and iproute2 needed), torn down afterwards, also on failure;
    traffic stays between them.
    """

    def __init__(self):
        tag = os.getpid() % 10000
        self.site, self.researcher = f"fs-site-{tag}", f"fs-res-{tag}"
        self.site_ip, self.researcher_ip = f"10.231.{tag % 250}.1", f"10.231.{tag % 250}.2"
        self._veth = (f"fsa{tag}", f"fsb{tag}")

    def __enter__(self):
        a, b = self._veth
        commands = [["ip", "netns", "add", self.site], ["ip", "netns", "add", self.researcher],
                    ["ip", "link", "add", a, "type", "veth", "peer", "name", b],
                    ["ip", "link", "set", a, "netns", self.site], ["ip", "link", "set", b, "netns", self.researcher],
                    ["ip", "-n", self.site, "addr", "add", f"{self.site_ip}/24", "dev", a],
                    ["ip", "-n", self.researcher, "addr", "add", f"{self.researcher_ip}/24", "dev", b]]
        commands += [["ip", "-n", ns, "link", "set", dev, "up"]
                     for ns, dev in ((self.site, a), (self.site, "lo"), (self.researcher, b), (self.researcher, "lo"))]
        try:
            for command in commands:
                subprocess.run(command, check=True, capture_output=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for ns in (self.site, self.researcher):  # deleting a namespace deletes its end of the veth pair too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def exec(self, ns):
        return ["ip", "netns", "exec", ns]


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2 for network namespaces")
def test_a_datasite_on_another_host_over_tls(tmp_path):
    """The datasite in its own network namespace, bound to its own address; the researcher in another, over TLS."""
    files = _clinic_files(tmp_path)
    with NetworkNamespaces() as net:
        launch = Launched("--data", files["a"], "--label", "diagnosis", "--name", "Clinic A", "--schema",
                          files["schema"], "--state", tmp_path / "a", "--host", net.site_ip, "--tls", "--no-dp",
                          prefix=net.exec(net.site))
        try:
            launch.wait_for("Press Ctrl-C")
            sites_file = tmp_path / "a" / "sites.json"
            assert json.loads(sites_file.read_text())["sites"][0]["url"] == f"https://{net.site_ip}:{DEFAULT_PORT}"
            out = tmp_path / "run"
            result = subprocess.run([*net.exec(net.researcher), sys.executable, "-m", "fedsyft", "run", "--sites-file",
                                     str(sites_file), "--test", str(files["test"]), "--label", "diagnosis", "--rounds",
                                     "2", "--out", str(out)], capture_output=True, text=True, timeout=300, env=ENV)
            assert result.returncode == 0, result.stderr
            assert json.loads((out / "metrics.json").read_text())["final"]["global_test_accuracy"] > 0.9
        finally:
            launch.process.send_signal(signal.SIGTERM)
            assert launch.process.wait(timeout=60) == 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.site not in listed and net.researcher not in listed


def test_sites_with_different_schemas_or_bad_tables_are_refused_in_one_line(tmp_path):
    from fedsyft.schema import agreed_schema
    from fedsyft.connection import SiteCredentials

    files = _clinic_files(tmp_path)
    schema = json.loads(files["schema"].read_text())
    other = {**schema, "classes": ["malignant", "benign"]}
    sites = [SiteCredentials("Clinic A", "https://h:1", "e", "p", schema=schema),
             SiteCredentials("Clinic B", "https://h:2", "e", "p", schema=other)]
    with pytest.raises(ValueError, match="schemas differ.*Clinic A.*Clinic B|schemas differ.*class"):
        agreed_schema({s.name: s.schema for s in sites})
    assert agreed_schema({s.name: s.schema for s in sites[:1]}) == schema
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,diagnosis\n1,x,benign\n")
    assert_one_line_error(fedsyft("launch", "--data", bad, "--label", "diagnosis", timeout=60), "bad.csv", "'b'")
    assert_one_line_error(fedsyft("launch", "--data", files["a"], timeout=60), "--label")
    assert_one_line_error(fedsyft("launch", "--data", files["a"], "--label", "diagnosis", "--schema",
                                  files["schema"], "--name", "x", "--name", "y", timeout=60), "--name")


def test_simulate_on_a_data_owners_own_table(tmp_path):
    """--data/--label: a CSV instead of MNIST; the derived schema is announced; DP works on it too."""
    from fedsyft.tabular import write_example_tables

    files = write_example_tables(tmp_path)
    digits, cancer = files["digits"], files["breast_cancer"]
    out = tmp_path / "digits"
    result = fedsyft("simulate", "--data", digits.path, "--label", digits.label, "--sites", 3, "--rounds", 3,
                     "--out", out)
    assert result.returncode == 0, result.stderr
    assert "become public" in result.stdout and "holding out a stratified 20 %" in result.stdout
    assert "coef shape=(10, 64)" in result.stdout and "  Site 3 -> train=" in result.stdout
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["final"]["global_test_accuracy"] >= 0.9 and len(doc["config"]["schema"]["features"]) == 64
    private = fedsyft("simulate", "--data", cancer.path, "--label", cancer.label, "--rounds", 2, "--epsilon", 4,
                      "--out", tmp_path / "cancer")
    assert private.returncode == 0, private.stderr
    assert "coef shape=(2, 30)" in private.stdout and "metrics withheld (DP)" in private.stdout
    assert_one_line_error(fedsyft("simulate", "--data", digits.path, timeout=60), "--label")
    assert_one_line_error(fedsyft("simulate", "--data", digits.path, "--label", "nope", timeout=60), "nope")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,0\n3,,1\n")
    assert_one_line_error(fedsyft("simulate", "--data", bad, "--label", "y", timeout=60), "bad.csv", "'b'", "row 2")
