"""The Ceph harness's own promises (tests/harness/ceph.py): real clusters, each its own world.

Two clusters side by side must not see each other's images or sessions, a
client of one must show up in that one's mon and in no other, the Python
bindings must load into pyenv's 3.11 (the cinder venv's interpreter) through
``rados_pythonpath``, and ``stop`` must leave no daemon behind.  These tests
fail, never skip, when Ceph is missing: CI installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from harness.ceph import CephCluster, CephError, ceph_available, rados_pythonpath, running_cluster, start_cluster
from harness.commands import run, wait_until

pytestmark = pytest.mark.ceph

#: The interpreter of the cinder venv (pyenv's build, not Debian's).
PYENV_PYTHON = Path("/root/.pyenv/versions/3.11.7/bin/python3")
DEBIAN_PYTHON = Path("/usr/bin/python3")

# Connects to a cluster as client.cinder with the bindings, reports, and holds
# the connection until its stdin closes.
HOLD_CONNECTION = """\
import json, os, sys
import rados, rbd
conf, report = sys.argv[1], sys.argv[2]
cluster = rados.Rados(conffile=conf, rados_id="cinder")
cluster.connect(timeout=10)
with cluster.open_ioctx("volumes") as ioctx:
    images = rbd.RBD().list(ioctx)
with open(report + ".tmp", "w") as out:
    json.dump({"pid": os.getpid(), "fsid": cluster.get_fsid(), "images": images, "rados": rados.__file__}, out)
os.rename(report + ".tmp", report)
sys.stdin.read()
cluster.shutdown()
"""


def _require(*interpreters: Path) -> None:
    reason = ceph_available()
    if reason:
        pytest.fail(reason)
    for python in interpreters:
        if not python.exists():
            pytest.fail(f"{python} not found (pyenv's 3.11.7 is the cinder venv's interpreter)")


def _daemons_naming(conf: Path) -> list[str]:
    """``PID argv`` of every ceph-mon/ceph-osd whose command line names ``conf`` (read from /proc, not the harness)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0") if entry.isdigit() else []
        except OSError:
            continue
        if argv and Path(argv[0]).name in ("ceph-mon", "ceph-osd") and str(conf) in argv:
            found.append(f"{entry} {' '.join(argv)}")
    return found


def _listening(cluster: CephCluster) -> set[str]:
    """Local addresses (``IP:PORT``) the cluster's daemons listen on, as ``ss`` shows them."""
    pids = {line.split()[0] for line in _daemons_naming(cluster.conf)}
    result = run(["ss", "-Htlnp"], timeout=10).check()
    return {line.split()[3] for line in result.stdout.splitlines() if any(f"pid={pid}," in line for pid in pids)}


def _cinder_sessions(cluster: CephCluster) -> list[str]:
    return [line for line in cluster.client_sessions() if line.split()[0] == "client.cinder"]


def test_two_clusters_side_by_side_are_separate_worlds(tmp_path: Path) -> None:
    _require(PYENV_PYTHON)
    with (
        running_cluster(tmp_path / "a", "a", "127.0.0.1") as a,
        running_cluster(tmp_path / "b", "b", "127.0.0.2") as b,
    ):
        assert a.fsid != b.fsid
        assert len(_daemons_naming(a.conf)) == 2 and len(_daemons_naming(b.conf)) == 2
        # Each binds only its own address (mon on 3300/6789, OSD on 68xx).
        for cluster in (a, b):
            listening = _listening(cluster)
            assert {f"{cluster.address}:3300", f"{cluster.address}:6789"} <= listening
            assert {address.rpartition(":")[0] for address in listening} == {cluster.address}
        # A third cluster on a taken address fails at once, saying so, and starts nothing.
        with pytest.raises(CephError, match=r"cannot bind 127\.0\.0\.1:3300"):
            start_cluster(tmp_path / "c", "c", "127.0.0.1")
        assert _daemons_naming(tmp_path / "c" / "ceph.conf") == []

        created = run(
            ["rbd", "--conf", str(a.conf), "--id", "cinder", "create", "volumes/img", "--size", "8M"], timeout=30
        )
        assert created.ok, str(created)
        assert a.rbd_ls() == ["img"]
        assert b.rbd_ls() == []

        pythonpath = rados_pythonpath(tmp_path / "pythonpath")
        report = tmp_path / "holder.json"
        holder = subprocess.Popen(
            [str(PYENV_PYTHON), "-c", HOLD_CONNECTION, str(b.conf), str(report)],
            env={"PYTHONPATH": str(pythonpath), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: report.exists() or holder.poll() is not None,
                lambda done: done,
                timeout=30,
                what="the bindings' client to connect to cluster b",
            )
            assert report.exists(), f"client exited {holder.returncode}: {holder.communicate(timeout=10)}"
            seen = json.loads(report.read_text())
            assert seen["pid"] == holder.pid
            assert seen["rados"].startswith(str(pythonpath)), seen["rados"]
            assert seen["fsid"] == b.fsid
            assert seen["images"] == []

            # While it is connected: b's mon has a client.cinder session and the
            # holder's connection; a has neither (the `rbd create` client has gone).
            assert _cinder_sessions(b), b.client_sessions()
            assert holder.pid in b.client_pids()
            assert holder.pid not in a.client_pids()
            wait_until(
                lambda: _cinder_sessions(a), lambda sessions: not sessions, timeout=5, what="a: no client.cinder"
            )
        finally:
            out, err = holder.communicate(input="", timeout=30)
        assert holder.returncode == 0, err
        # A session ends with its client.
        wait_until(lambda: _cinder_sessions(b), lambda sessions: not sessions, timeout=5, what="b: no client.cinder")
        assert holder.pid not in b.client_pids()

        a.stop()
        assert _daemons_naming(a.conf) == []
        assert b.rbd_ls() == []  # b carries on without a
    # running_cluster stopped b (and a again: stop is idempotent).
    assert _daemons_naming(a.conf) == [] and _daemons_naming(b.conf) == []


def test_a_failed_start_says_why_and_leaves_nothing_running(tmp_path: Path) -> None:
    _require()
    # Fails after the mon and (maybe) the OSD are up: a cap that does not parse.
    with pytest.raises(CephError) as failure:
        start_cluster(tmp_path / "c", "c", "127.0.0.3", users={"cinder": ["two words"]})
    message = str(failure.value)
    assert "osd capability parse failed" in message
    assert "----- mon.a log" in message and "----- osd.0 log" in message
    assert _daemons_naming(tmp_path / "c" / "ceph.conf") == []


@pytest.mark.parametrize("python", [DEBIAN_PYTHON, PYENV_PYTHON], ids=["debian-3.11", "pyenv-3.11.7"])
def test_rados_pythonpath_serves_debian_and_pyenv_pythons(tmp_path: Path, python: Path) -> None:
    _require(python)
    pythonpath = rados_pythonpath(tmp_path / "pythonpath")
    assert sorted(p.name.split(".")[0] for p in pythonpath.iterdir()) == ["rados", "rbd"]
    code = (
        f"import sys; sys.path.insert(0, {str(pythonpath)!r}); import rados, rbd; print(rados.__file__, rbd.__file__)"
    )
    probe = run([str(python), "-I", "-c", code], timeout=30).check()
    assert probe.stdout.split() == [str(pythonpath / p.name) for p in sorted(pythonpath.iterdir())]
