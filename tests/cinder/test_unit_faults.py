"""Issue 14's bad files and faults, on real cinder-volume 29 through the rendered unit.

ONE cinder-volume unit runs under a real systemd 252 user manager for the
whole module (cinder 29 from PyPI, two fake backends, RabbitMQ as the
transport so a volume can be created through cinder's own RPC API); every
scenario below breaks something, reloads with the operator's ``systemctl
reload``, puts the good file back and proves a good reload works again.

What each scenario asserts is what an operator meets:

* the service keeps serving: the same MainPID and worker pids, and a volume
  created through cinder's RPC API on each backend becomes ``available``;
* the reason: ``systemctl reload``'s exit status and the ``Status:`` line of
  ``systemctl status`` (StatusText), or the command's own stderr where the
  operator runs ``cinder-reload`` himself;
* promptly: seconds, not the 75-295 s the broken behaviour took (a generous
  bound, no timing claim);
* no secret anywhere: StatusText, ``systemctl status``, the state file, the
  service's log, the manager's log, and the output of ExecReload='s command
  run by hand (this user manager has no journal to hold it).

The faults of the runtime directory are made in the manager's private mount
namespace (a read-only bind mount, a 64 KiB tmpfs): nothing on the host changes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cinderproc import volume_config
from cinderunit import Unit
from harness.commands import CommandResult
from harness.fixtures import namespaces_unavailable
from harness.managers import SystemdHost252, UserManager
from helpers import start_sighup_catcher, wait_until
from stack.infra import rabbit_vhost

pytestmark = [pytest.mark.cinder, pytest.mark.systemd]

HERE = Path(__file__).resolve().parent
#: The secret the running configuration holds from the start.
RUNNING_SECRET = "s3cr3t-chap-running"
#: What the broken behaviour took; a reason must come well within it.
PROMPT = 20.0
#: A reason that waits for the service's acknowledgement (signal --wait's 15 s).
PROMPT_ACK = 30.0


class Volume:
    """The module's one running cinder-volume unit, and what an operator can see of it."""

    def __init__(self, manager: UserManager, unit: Unit, venv: Path, confdir: Path) -> None:
        self.manager = manager
        self.unit = unit
        self.venv = venv
        self.confdir = confdir
        self.good = unit.config_file.read_text()
        self.debug = False
        self.client = [str(venv / "bin" / "python"), str(HERE / "rpcclient.py"), str(unit.config_file)]

    # -- what an operator sees ----------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.unit.state_dir

    @property
    def state_file(self) -> Path:
        return self.state_dir / "cinder-volume.reload.json"

    def main_pid(self) -> int:
        return int(self.unit.show()["MainPID"])

    def pids(self) -> set[int]:
        return self.unit.pids()

    def worker_pids(self) -> dict[str, int]:
        return {w["worker"]: int(w["pid"]) for w in self.unit.state()["workers"]}

    def status_text(self) -> str:
        return self.unit.show()["StatusText"]

    def systemctl_status(self) -> str:
        return self.manager.systemctl("status", "--lines=0", self.unit.unit).output

    def manager_log(self) -> str:
        log = self.manager.workdir / f"{self.manager.name}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def seen_in_state(self) -> str:
        """Every file the service keeps in its runtime directory, as the namespace sees it."""
        root = Path(f"/proc/{self.main_pid()}/root") / self.state_dir.relative_to("/")
        if not root.is_dir():
            return ""
        return "".join(p.read_text(errors="replace") for p in root.iterdir() if p.is_file())

    def everything_shown(self, *results: CommandResult | subprocess.CompletedProcess[str]) -> str:
        parts = [str(r.stdout) + str(r.stderr) for r in results]
        parts += [self.status_text(), self.systemctl_status(), self.seen_in_state(), self.unit.log()]
        parts += [self.manager_log()]
        return "\n".join(parts)

    def exec_reload(self) -> CommandResult:
        """What the unit's ExecReload= runs, run by the operator."""
        main = str(self.main_pid())
        return self.cli("signal", "cinder-volume", "--pid", main, "--wait", "--state-dir", str(self.state_dir))

    def cli(self, *args: str, timeout: float = 60.0) -> CommandResult:
        """``cinder-reload ARGS`` as the operator runs it on the host the unit runs on."""
        return self.manager.run([str(self.venv / "bin" / "cinder-reload"), *args], timeout=timeout)

    # -- acting on it --------------------------------------------------------
    def write(self, text: str) -> None:
        """Replace cinder.conf whatever is at its path now (a FIFO, a symlink)."""
        path = self.unit.config_file
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(text)

    def reload(self) -> CommandResult:
        return self.unit.reload()

    def serves(self) -> None:
        """A volume on each backend, through cinder's RPC API, becomes available."""
        host = socket.gethostname()
        done = subprocess.run(
            [*self.client, "create", f"{host}@fake1#fake1,{host}@fake2#fake2", "1", "--wait", "60"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        statuses = [json.loads(line)["status"] for line in done.stdout.splitlines()]
        assert statuses == ["available", "available"], done.stdout

    def flipped(self) -> str:
        """The good file with [DEFAULT] debug flipped (a change every process applies live)."""
        return self.good.replace(f"debug = {self.debug}".lower(), f"debug = {not self.debug}".lower())

    def running_flipped(self) -> None:
        """The service now runs :meth:`flipped` (a scenario's reload applied it)."""
        self.good, self.debug = self.flipped(), not self.debug

    def filter_function(self, backend: str) -> str | None:
        """The filter_function ``backend``'s worker runs with, as its driver reports it over RPC."""
        done = subprocess.run(
            [*self.client, "capabilities", f"{socket.gethostname()}@{backend}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        (pool,) = json.loads(done.stdout)["pools"]
        return pool["filter_function"]  # type: ignore[no-any-return]

    def good_reload(self) -> None:
        """A good change afterwards: applied live in every process, from what the service ran, same pids."""
        pids, before = self.pids(), self.debug
        self.write(self.flipped())
        done = self.reload()
        assert done.ok, (done, self.status_text())
        self.running_flipped()
        doc = self.unit.state()
        assert doc["result"] == "ok", doc
        assert [(c["option"], c["old"], c["new"], c["applied"]) for c in doc["changed"]] == [
            ("debug", before, self.debug, "live")
        ], doc["changed"]
        assert {w["worker"]: w["result"] for w in doc["workers"]} == {"fake1": "ok", "fake2": "ok"}
        assert self.pids() == pids
        # Masked or not, the state file is the service's (and its group's) only.
        assert stat.S_IMODE(self.state_file.stat().st_mode) & 0o007 == 0, oct(self.state_file.stat().st_mode)


@pytest.fixture(scope="module")
def volume(cinder_venv: Path, cinder_db: Path) -> Iterator[Volume]:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    harness = Path(tempfile.mkdtemp(prefix="cr-faults."))
    harness.chmod(0o755)
    manager = SystemdHost252(harness)
    try:
        with rabbit_vhost("crfaults") as url:
            workdir = harness / "cinder-volume"
            workdir.mkdir()
            for sub in ("state", "lock"):
                (workdir / sub).mkdir()
            shutil.copy(cinder_db, workdir / "cinder.sqlite")
            # A config dir as well as the file (cinder.conf.d): the drop-in
            # scenarios need one, and the [reload] section lives there.
            confdir = workdir / "cinder.conf.d"
            confdir.mkdir()
            text = volume_config(workdir, fake1=f"chap_password = {RUNNING_SECRET}")
            text = text.replace("transport_url = fake://", f"transport_url = {url}")
            main, _, tail = text.partition("[reload]\n")
            reload_section, _, backends = tail.partition("\n\n")
            # A worker that does not answer fails a reload after 8 s (the
            # SIGSTOP scenario); a new worker's start fits in it under load.
            reload_section = reload_section.replace("worker_timeout = 4", "worker_timeout = 8")
            (confdir / "10-reload.conf").write_text(f"[reload]\n{reload_section}\n")
            cinder_reload = venv_bin(cinder_venv, "cinder-reload")
            exec_start = (
                f"{cinder_reload} run cinder-volume -- --config-file {workdir / 'cinder.conf'} --config-dir {confdir}"
            )
            # The rendered unit with ExecStart= naming the config dir too.
            extra = f"\n[Service]\nExecStart=\nExecStart={exec_start}\n"
            unit = Unit(manager, cinder_venv, workdir, "cinder-volume", main + backends, extra)
            started = unit.start()
            if not started.ok:
                status = manager.systemctl("status", "--lines=0", unit.unit).stdout
                raise AssertionError(f"{started}\n{status}\n{unit.log()[-3000:]}")
            svc = Volume(manager, unit, cinder_venv, confdir)
            try:
                yield svc
            finally:
                manager.stop(unit.unit, timeout=120)
                print(f"----- cinder-volume.log -----\n{unit.log()[-4000:]}")
    finally:
        manager.close()
        for log in sorted(harness.glob("*.log")):
            print(f"----- {log.name} -----\n{log.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(harness, ignore_errors=True)


def venv_bin(venv: Path, name: str) -> str:
    return str(venv / "bin" / name)


def assert_kept_serving(volume: Volume, pids: set[int], main: int) -> None:
    props = volume.unit.show()
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert int(props["MainPID"]) == main and volume.pids() == pids
    volume.serves()


def assert_no_secret(shown: str, secrets: tuple[str, ...]) -> None:
    for secret in (RUNNING_SECRET, *secrets):
        assert secret not in shown, f"{secret!r} shown: ...{shown[max(0, shown.find(secret) - 300) :][:600]}..."


# -- bad files ---------------------------------------------------------------------
@dataclass(frozen=True)
class BadFile:
    """Put ``make`` at the config paths; a reload must (not) take it, for ``reason``."""

    make: Callable[[Volume], None]
    ok: bool
    reason: str
    secrets: tuple[str, ...] = ()
    cleanup: Callable[[Volume], None] = field(default=lambda v: None)


def replaced_by(make: Callable[[Path], None]) -> Callable[[Volume], None]:
    def put(volume: Volume) -> None:
        volume.unit.config_file.unlink()
        make(volume.unit.config_file)

    return put


def edited(change: Callable[[str], str]) -> Callable[[Volume], None]:
    return lambda volume: volume.write(change(volume.good))


def section(text: str, name: str, *lines: str) -> str:
    """``text`` with ``lines`` added at the top of section ``[name]``."""
    head = f"[{name}]\n"
    return text.replace(head, head + "".join(f"{line}\n" for line in lines), 1)


def comments_only_with_everything_in_conf_d(volume: Volume) -> None:
    (volume.confdir / "50-cinder.conf").write_text(volume.good)
    volume.write("# Everything is in cinder.conf.d/ (Debian's layout for packaged drop-ins).\n#\n")


BAD_FILES: dict[str, BadFile] = {
    "FIFO": BadFile(replaced_by(os.mkfifo), False, "is a FIFO, not a regular file"),
    "symlink to /dev/urandom": BadFile(
        replaced_by(lambda p: p.symlink_to("/dev/urandom")), False, "not a regular file"
    ),
    "symlink to /dev/zero": BadFile(replaced_by(lambda p: p.symlink_to("/dev/zero")), False, "not a regular file"),
    "FIFO in the config dir": BadFile(
        lambda v: os.mkfifo(v.confdir / "20-fifo.conf"),
        False,
        "20-fifo.conf: is a FIFO, not a regular file",
        cleanup=lambda v: (v.confdir / "20-fifo.conf").unlink(),
    ),
    # chap_password wrapped onto an indented line that a blank line orphaned.
    "secret on a continuation line": BadFile(
        edited(lambda t: section(t, "fake2", "chap_password =", "", "    wr4pped-s3cr3t")),
        False,
        "Unexpected continuation line (line not shown: it may contain a secret)",
        ("wr4pped-s3cr3t",),
    ),
    # A new secret on a line oslo.config cannot parse (its error quotes the line).
    "new secret on a line without '='": BadFile(
        edited(lambda t: section(t, "fake2", "chap_password n3w-s3cr3t-typo")),
        False,
        "(line not shown: it may contain a secret)",
        ("n3w-s3cr3t-typo",),
    ),
    # [database] connection wrapped over two lines with a comment between.
    "wrapped database connection": BadFile(
        edited(
            lambda t: section(
                t.replace("connection = sqlite", "# was: sqlite"),
                "database",
                "connection = mysql+pymysql://cinder:",
                "# the password follows",
                "  p4ss-w0rd-db@db.example/cinder",
            )
        ),
        False,
        "syntax error",
        ("p4ss-w0rd-db", "mysql+pymysql://cinder:"),
    ),
    # A new value of a secret option that fails validation (a Dict, not NAME:VALUE pairs).
    "new secret failing validation": BadFile(
        edited(lambda t: section(t, "fake2", "replication_device = backend_id:b,san_password:n3w-s3cr3t-rep,oops")),
        False,
        "[fake2] replication_device",
        ("n3w-s3cr3t-rep",),
    ),
    "enabled_backends naming a missing section": BadFile(
        edited(lambda t: t.replace("enabled_backends = fake1,fake2", "enabled_backends = fake1,fake2,fake3")),
        False,
        "[fake3]",
    ),
    # cinder starts with both of these: a reload must take them.
    "empty drop-in in the config dir": BadFile(
        lambda v: (v.confdir / "00-empty.conf").write_text(""),
        True,
        "no changes",
        cleanup=lambda v: (v.confdir / "00-empty.conf").unlink(),
    ),
    "cinder.conf of comments, everything in conf.d": BadFile(
        comments_only_with_everything_in_conf_d,
        True,
        "no changes",
        cleanup=lambda v: (v.confdir / "50-cinder.conf").unlink(),
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file(volume: Volume, case: str) -> None:
    bad = BAD_FILES[case]
    main, pids = volume.main_pid(), volume.pids()
    generation = volume.unit.state()["generation"]
    bad.make(volume)
    try:
        done = volume.reload()
        status = volume.status_text()
        doc = volume.unit.state()
        # ExecReload='s command once more, by hand: what it prints is what the
        # journal would hold (this user manager has none).
        by_hand = volume.exec_reload()
        shown = volume.everything_shown(done, by_hand)
    finally:
        bad.cleanup(volume)
        volume.write(volume.good)

    assert done.duration < PROMPT, f"{case}: the reason took {done.duration:.1f}s"
    assert by_hand.duration < PROMPT, f"{case}: the reason took {by_hand.duration:.1f}s"
    if bad.ok:
        assert done.ok and by_hand.ok, (case, done, by_hand, status)
        assert status.startswith(f"Reload #{generation + 1} ok") and bad.reason in status, status
    else:
        assert not done.ok and by_hand.returncode == 1, (case, done, by_hand)
        assert status.startswith("Reload failed: ") and bad.reason in status, (case, status)
        assert bad.reason in by_hand.stderr, by_hand
        assert doc["result"] == "failed" and doc["changed"] == [] and doc["workers"] == [], doc
    assert "Traceback" not in by_hand.output
    assert_no_secret(shown, bad.secrets)
    assert_kept_serving(volume, pids, main)
    volume.good_reload()


# -- the runtime directory ---------------------------------------------------------
def in_namespace(volume: Volume, script: str) -> None:
    """Run ``script`` in the manager's private mount namespace (where the unit runs)."""
    volume.manager.run(["sh", "-ec", script], timeout=60).check()


@dataclass(frozen=True)
class RuntimeFault:
    """Break the runtime directory ``D`` (``make``), reload a valid change, undo (``cleanup``)."""

    make: str
    cleanup: str
    #: None: the reload works; else what STATUS= (systemctl status) must say.
    status: str | None


RUNTIME_FAULTS: dict[str, RuntimeFault] = {
    "read-only": RuntimeFault(
        'mount --bind "$D" "$D" && mount -o remount,ro,bind "$D"', 'umount "$D"', "Read-only file system"
    ),
    # A 64 KiB tmpfs holding what the directory held, then filled up.
    "full": RuntimeFault(
        'S=$(mktemp -d) && cp -a "$D/." "$S/" && mount -t tmpfs -o size=64k,mode=755 tmpfs "$D" && '
        'cp -a "$S/." "$D/" && rm -rf "$S" && { dd if=/dev/zero of="$D/filler" bs=4096 2>/dev/null || true; }',
        'umount "$D"',
        "No space left on device",
    ),
    # What Debian's units do to /run/cinder when another cinder unit stops.
    "removed": RuntimeFault('rm -rf "$D"', "true", None),
}


@pytest.mark.parametrize("case", list(RUNTIME_FAULTS))
def test_a_runtime_directory_fault(volume: Volume, case: str) -> None:
    fault = RUNTIME_FAULTS[case]
    main, pids = volume.main_pid(), volume.pids()
    directory = f"D={shlex.quote(str(volume.state_dir))}\n"
    in_namespace(volume, directory + fault.make)
    try:
        volume.write(volume.flipped())
        done = volume.reload()
        status = volume.status_text()
        shown = volume.everything_shown(done)
    finally:
        in_namespace(volume, directory + fault.cleanup)
    # The change was valid: the service applied it, whether or not it could say so in its state file.
    volume.running_flipped()
    limit = PROMPT if fault.status is None else PROMPT_ACK
    assert done.duration < limit, f"{case}: {done.duration:.1f}s"
    if fault.status is None:
        assert done.ok, (done, status)
        assert status.startswith("Reload #") and " ok: " in status, status
        assert volume.unit.state()["result"] == "ok"
    else:
        # systemctl reload fails (ExecReload= got no acknowledgement); STATUS= says what the
        # reload did and why its state file is stale.
        assert not done.ok, done
        assert " ok: " in status and "state file not written" in status and fault.status in status, status
    assert_no_secret(shown, ())
    assert_kept_serving(volume, pids, main)
    volume.good_reload()


def test_a_state_file_that_is_not_json(volume: Volume) -> None:
    volume.state_file.write_text("{ this is not json")

    status = volume.cli("status", "cinder-volume", "--state-dir", str(volume.state_dir))

    assert status.returncode == 4 and "not a state file (not JSON" in status.stderr, status
    assert "Traceback" not in status.output
    volume.good_reload()  # the service replaces it


def test_a_directory_at_the_state_file_path(volume: Volume) -> None:
    main, pids = volume.main_pid(), volume.pids()
    generation = volume.unit.state()["generation"]
    volume.state_file.unlink()
    volume.state_file.mkdir()
    try:
        volume.write(volume.flipped())
        status = volume.cli("status", "cinder-volume", "--state-dir", str(volume.state_dir))
        done = volume.reload()
        # What ExecReload= runs, run by hand: its stderr is the reason (no journal here).
        by_hand = volume.exec_reload()
    finally:
        volume.state_file.rmdir()
        volume.write(volume.good)

    assert status.returncode == 4 and "is a directory, not a state file" in status.stderr, status
    assert not done.ok and done.duration < PROMPT, done
    assert by_hand.returncode == 1 and "is a directory" in by_hand.stderr, by_hand
    assert by_hand.duration < PROMPT
    for result in (status, by_hand):
        assert "Traceback" not in result.output
    assert_kept_serving(volume, pids, main)
    volume.good_reload()
    # Never signalled: its result could never have been read.
    assert volume.unit.state()["generation"] == generation + 1


# -- workers and processes -----------------------------------------------------------
def lines_of(log: str, pid: int, pattern: str) -> list[str]:
    return [line for line in log.splitlines() if f" {pid} " in line and pattern in line]


def test_a_worker_stopped_through_a_reload(volume: Volume) -> None:
    """SIGSTOPped through a reload: the reload fails promptly naming it; continued,
    the worker does not apply the change later; the next reload brings it in line.

    The change is ``debug = true``, seen from outside in what each process
    logs: cinder's DEBUG lines, from the pids that run it, while a volume is
    created on each backend."""
    if volume.debug:
        volume.good_reload()  # start from debug = false
    main, pids = volume.main_pid(), volume.pids()
    workers = volume.worker_pids()
    fake1, fake2 = workers["fake1"], workers["fake2"]
    mark = len(volume.unit.log())
    volume.write(volume.flipped())
    os.kill(fake2, signal.SIGSTOP)
    try:
        done = volume.reload()
        status = volume.status_text()
    finally:
        os.kill(fake2, signal.SIGCONT)

    assert not done.ok and done.duration < PROMPT, done
    assert status.startswith("Reload failed") and f"fake2 (pid {fake2}) did not take the change" in status, status
    doc = volume.unit.state()
    assert {w["worker"]: w["result"] for w in doc["workers"]} == {"fake1": "ok", "fake2": "failed"}, doc
    # Continued, fake2 reads the request it missed (and says it leaves it, or applies it).
    wait_until(
        lambda: (
            lines_of(volume.unit.log()[mark:], fake2, "after its deadline")
            or lines_of(volume.unit.log()[mark:], fake2, "Option DEFAULT.debug changed")
        ),
        15,
        "fake2 to read what it missed",
    )
    mark = len(volume.unit.log())
    assert_kept_serving(volume, pids, main)
    served = volume.unit.log()[mark:]
    assert lines_of(served, fake1, " DEBUG "), "fake1 took debug = true"
    assert not lines_of(served, fake2, " DEBUG "), "fake2 must not have taken it after the reload failed"

    # The operator reloads again: fake2 takes what it missed (the main process
    # and fake1 already run it, so no diff shows it), and the reload says so.
    again = volume.reload()
    assert again.ok, (again, volume.status_text())
    volume.running_flipped()
    mark = len(volume.unit.log())
    volume.serves()
    assert lines_of(volume.unit.log()[mark:], fake2, " DEBUG "), "fake2 applied the change it missed"
    workers = {w["worker"]: w for w in volume.unit.state()["workers"]}
    assert workers["fake2"]["result"] == "ok" and "missed at an earlier reload" in workers["fake2"]["message"]
    assert volume.pids() == pids
    volume.good_reload()


def test_a_file_changed_while_the_reload_runs(volume: Volume) -> None:
    """Changed again while fake1's worker is being replaced: every process runs
    the bytes the main process validated, the state describes those, and the
    next reload finds the later edit whole."""
    main = volume.main_pid()
    before = volume.worker_pids()
    validated = section(volume.good, "fake1", "filter_function = volume.size < 10")
    later = section(
        validated.replace("volume.size < 10", "volume.size < 20"), "fake2", "filter_function = volume.size < 30"
    )
    volume.write(validated)
    outcome: dict[str, CommandResult] = {}
    reload = threading.Thread(target=lambda: outcome.update(done=volume.reload()))
    reload.start()
    try:
        wait_until(lambda: phase(volume) == "workers", 60, "the reload's workers step")
        volume.write(later)
    finally:
        reload.join(180)
    done = outcome["done"]

    assert done.ok, (done, volume.status_text())
    doc = volume.unit.state()
    assert [(c["group"], c["option"], c["new"]) for c in doc["changed"]] == [
        ("fake1", "filter_function", "volume.size < 10")
    ]
    workers = {w["worker"]: w for w in doc["workers"]}
    assert workers["fake1"]["old_pid"] == before["fake1"] and workers["fake2"]["pid"] == before["fake2"]
    assert volume.main_pid() == main
    # What each worker's driver runs with (it reads its configuration when asked).
    assert (volume.filter_function("fake1"), volume.filter_function("fake2")) == ("volume.size < 10", None)
    volume.serves()
    # Had the main process read the later file, the next reload would miss part of it.
    again = volume.reload()
    assert again.ok, (again, volume.status_text())
    assert sorted((c["group"], c["old"], c["new"]) for c in volume.unit.state()["changed"]) == [
        ("fake1", "volume.size < 10", "volume.size < 20"),
        ("fake2", None, "volume.size < 30"),
    ]
    assert (volume.filter_function("fake1"), volume.filter_function("fake2")) == (
        "volume.size < 20",
        "volume.size < 30",
    )
    volume.write(volume.good)
    back = volume.reload()
    assert back.ok, (back, volume.status_text())
    assert_kept_serving(volume, volume.pids(), main)
    volume.good_reload()


def phase(volume: Volume) -> str | None:
    try:
        doc = json.loads(volume.state_file.read_text())
    except (OSError, ValueError):
        return None
    return str((doc.get("in_progress") or {}).get("phase") or "") or None


def test_signal_refuses_a_process_that_is_not_the_service(volume: Volume, tmp_path: Path) -> None:
    """``cinder-reload signal --pid`` at an unrelated process that catches SIGHUP."""
    main, pids = volume.main_pid(), volume.pids()
    generation = volume.unit.state()["generation"]
    marker = tmp_path / "got-sighup"
    target = start_sighup_catcher(marker, 120)
    try:
        done = volume.cli(
            "signal", "cinder-volume", "--pid", str(target.pid), "--wait", "--state-dir", str(volume.state_dir)
        )
        # A SIGHUP sent would have run the catcher's handler within milliseconds:
        # give it a moment it would never need, then look.
        time.sleep(0.5)
        assert not marker.exists(), "the signal must not have been sent"
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()

    assert done.returncode == 1 and done.duration < PROMPT, done
    assert f"process {target.pid}" in done.stderr and "is not cinder-volume" in done.stderr, done.stderr
    assert "Traceback" not in done.output
    assert_kept_serving(volume, pids, main)
    volume.good_reload()
    assert volume.unit.state()["generation"] == generation + 1
