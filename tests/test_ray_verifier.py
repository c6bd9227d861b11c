"""The Ray verifier on a two-node Ray cluster started on this machine, with the REPL double as Lean:
a batch spread over both nodes in input order, a node killed mid-batch with every proof answered
exactly once, and nothing left running afterwards."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from processes import tagged, wait_until

from prover.verifier import ProofRequest, Status, VerifierConfig, make_verifier
from prover.verifier.ray_backend import plan_actors

DOUBLE = str(Path(__file__).with_name("repl_double.py"))
HEADER = "import Mathlib\nimport Aesop\n"
STATEMENT = "theorem t (a b : ℝ) (h : a = b) : b = a := by\n"
RAY = str(Path(sys.executable).with_name("ray"))
# Node death is noticed by the head's health checks; the defaults take ~30 s.
HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
}


def test_plan_actors_one_per_cpu_share_on_live_nodes():
    nodes = [
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 16.0}},
        {"NodeID": "b", "Alive": True, "Resources": {"CPU": 7.0, "GPU": 8.0}},  # too few CPUs left over
        {"NodeID": "c", "Alive": False, "Resources": {"CPU": 64.0}},  # dead
        {"NodeID": "d", "Alive": True, "Resources": {"GPU": 8.0}},
    ]  # started with --num-cpus 0
    assert plan_actors(nodes, 8) == ["a", "a"]
    assert plan_actors(nodes, 4) == ["a"] * 4 + ["b"]
    assert plan_actors(nodes, 32) == []


def in_group(pgid: int) -> list[int]:
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free TCP ports (Ray wants a range for its workers)."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 60000 - size)
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


def start_node(temp_dir: str, base: int, extra: list[str], env: dict[str, str]) -> int:
    """``ray start`` in its own session; the node's daemons inherit its process group, returned."""
    ports = [
        "--node-manager-port",
        base,
        "--object-manager-port",
        base + 1,
        "--dashboard-agent-listen-port",
        base + 2,
        "--dashboard-agent-grpc-port",
        base + 3,
        "--runtime-env-agent-port",
        base + 4,
        "--metrics-export-port",
        base + 5,
        "--min-worker-port",
        base + 10,
        "--max-worker-port",
        base + 40,
    ]
    argv = [
        RAY,
        "start",
        "--num-cpus",
        "2",
        "--temp-dir",
        temp_dir,
        "--object-store-memory",
        str(100 << 20),
        "--disable-usage-stats",
        *extra,
        *map(str, ports),
    ]
    proc = subprocess.Popen(
        argv, env={**os.environ, **env}, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate(timeout=120)
    if proc.returncode:
        raise RuntimeError(f"ray start failed ({proc.returncode}): {out.decode(errors='replace')[-2000:]}")
    return proc.pid


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node on this machine, 2 CPUs each, own ports and temp dirs; torn down after."""
    root = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    base = free_port_block(120)
    address = f"127.0.0.1:{base}"
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **HEALTH_CHECKS}
    groups = []
    try:
        groups.append(
            start_node(
                f"{root}/head",
                base + 50,
                [
                    "--head",
                    "--port",
                    str(base),
                    "--include-dashboard",
                    "false",
                    "--dashboard-port",
                    str(base + 7),
                    "--ray-client-server-port",
                    str(base + 8),
                    "--resources",
                    '{"head": 1}',
                ],
                env,
            )
        )
        groups.append(
            start_node(f"{root}/second", base + 70, ["--address", address, "--resources", '{"second": 1}'], env)
        )
        yield {"address": address, "head": groups[0], "second": groups[1]}
    finally:
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pgid in groups:
            if not wait_until(lambda: not in_group(pgid), 5):
                os.killpg(pgid, signal.SIGKILL)
        left = [p for g in groups for p in in_group(g)]
        shutil.rmtree(root, ignore_errors=True)
        assert wait_until(lambda: not [p for g in groups for p in in_group(g)], 10), f"Ray processes left: {left}"


@pytest.fixture(scope="module")
def tag():
    return f"ray-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def verifier(cluster, tag):
    config = VerifierConfig(
        backend="ray",
        ray_address=cluster["address"],
        ray_cpus_per_actor=2,
        timeout=20.0,
        start_timeout=60.0,
        repl_command=[sys.executable, DOUBLE, "--tag", tag],
    )
    with make_verifier(config, headers=[HEADER]) as v:
        yield v
    assert wait_until(lambda: not tagged(tag), 20), f"REPL doubles left after close: {tagged(tag)}"


def second_node_key(verifier) -> str:
    import ray

    [node] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "second" in n["Resources"]]
    [key] = [k for k in verifier.stats()["answered"] if k.endswith(node[:8])]
    return key


def request(i: int, directive: str) -> ProofRequest:
    return ProofRequest(STATEMENT, f"  exact h.symm -- {i} {directive}", HEADER, "t")


# directive -> the verdict the REPL double leads to
OUTCOMES = {
    "": Status.PROVED,
    "double:error": Status.REJECTED,
    "double:sorry": Status.REJECTED,
    "double:axiom=Fake.ax": Status.REJECTED,
}


@pytest.mark.ray
def test_verify_cli_on_ray(cluster, tmp_path, monkeypatch):
    """``python -m prover.verify --backend ray``: the file is checked by the cluster's actors, not by a pool
    in this process (run before the module's verifier takes every CPU); none is left when it exits."""
    import json

    from prover.verifier.pool import LeanPool
    from prover.verify import main

    def no_local_pool(*args, **kwargs):
        raise AssertionError("backend ray must not start a local REPL pool")

    monkeypatch.setattr(LeanPool, "__init__", no_local_pool)  # this process only; the actors are others
    tag = f"ray-cli-{uuid.uuid4().hex[:8]}"

    lines = [
        {"name": f"p{i}", "statement": STATEMENT, "proof": request(i, k).proof, "header": HEADER}
        for i, k in enumerate(OUTCOMES)
    ]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code = main(
        [
            str(src),
            "--out",
            str(out),
            "--backend",
            "ray",
            "--ray_address",
            cluster["address"],
            "--ray_cpus_per_actor",
            "2",
            "--timeout",
            "20",
            "--start_timeout",
            "60",
            "--repl_command",
            json.dumps([sys.executable, DOUBLE, "--tag", tag]),
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == [OUTCOMES[k].value for k in OUTCOMES]
    assert wait_until(lambda: not tagged(tag), 20), f"REPL doubles left after the CLI exited: {tagged(tag)}"


@pytest.mark.ray
def test_processes_of_one_launch_share_the_actors(cluster, tag, monkeypatch):
    """As under torchrun: the second client finds the first one's actors by name instead of starting more
    (which could never be placed: the first took every CPU); closing it leaves them to the first."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port_block(1)))
    config = VerifierConfig(
        backend="ray",
        ray_address=cluster["address"],
        ray_cpus_per_actor=2,
        timeout=20.0,
        start_timeout=60.0,
        repl_command=[sys.executable, DOUBLE, "--tag", tag],
    )
    with make_verifier(config, headers=[HEADER]) as first:
        with make_verifier(config) as second:
            assert second.stats()["actors"] == first.stats()["actors"] == 2
            assert second.check_batch([request(0, "")])[0].proved
        assert first.check_batch([request(1, "double:error")])[0].status is Status.REJECTED
        assert sum(first.stats()["answered"].values()) == 1  # each client counts its own verdicts
    assert wait_until(lambda: not tagged(tag), 20), f"REPL doubles left after the owner closed: {tagged(tag)}"


@pytest.mark.ray
def test_batch_spread_over_both_nodes_in_input_order(verifier):
    stats = verifier.stats()
    assert stats["actors"] == 2 and len(stats["nodes"]) == 2 and stats["workers"] == 4
    rng = random.Random(7)
    kinds = [rng.choice(list(OUTCOMES)) for _ in range(48)]
    requests = [request(i, f"{k} double:slow=0.05") for i, k in enumerate(kinds)]
    verdicts = verifier.check_batch(requests + requests[:5])  # the repeats share the in-flight checks
    assert [v.status for v in verdicts] == [OUTCOMES[k] for k in kinds + kinds[:5]]
    assert all(v.cached for v in verdicts[48:])
    answered = verifier.stats()["answered"]
    assert sum(answered.values()) == 48 and all(n >= 8 for n in answered.values()), answered
    again = verifier.check_batch(requests[:3])
    assert all(v.cached for v in again) and sum(verifier.stats()["answered"].values()) == 48


@pytest.mark.ray
def test_node_killed_mid_batch_every_proof_answered_once(verifier, cluster):
    second = second_node_key(verifier)
    before = verifier.stats()["answered"]
    n = 40
    directives = [("double:error" if i % 5 == 0 else "") + f" double:slow=0.3 fresh{i}" for i in range(n)]
    futures = [verifier.submit(request(i, d)) for i, d in enumerate(directives)]
    assert wait_until(lambda: verifier.stats()["answered"][second] >= before[second] + 2, 60)
    assert sum(f.done() for f in futures) < n // 2, "the batch finished before the node could be killed"
    os.killpg(cluster["second"], signal.SIGKILL)
    verdicts = [f.result(timeout=120) for f in futures]
    assert [v.status for v in verdicts] == [Status.REJECTED if i % 5 == 0 else Status.PROVED for i in range(n)]
    stats = verifier.stats()
    assert stats["actors"] == 1 and stats["resent"] > 0
    assert sum(stats["answered"].values()) - sum(before.values()) == n  # one verdict each, none twice
    assert verifier.check_batch([request(99, "")])[0].proved  # the survivor carries on
