"""Why the Debian drop-in does not reload cinder-api through uWSGI: what uWSGI's own
graceful reload does to Debian's cinder-api, seen on sid.

Debian runs cinder-api as ``uwsgi_python3 --http-socket [::]:8776 --ini
/etc/cinder/cinder-api-uwsgi.ini`` (read here from ``/etc/init.d/cinder-api
show-args``).  uWSGI's graceful reload is SIGHUP to its master ("gracefully
reload all the workers and the master process").  Debian's ini sets
``exit-on-reload = true`` and ``lazy-apps = true``; this test starts
Debian's cinder-api exactly as Debian's script does, sends that SIGHUP, and
records what an API client sees: the master *exits* ("GAME OVER") and
nothing answers any more: a stop rather than a reload.  Here (workers that
served one request) that takes ~9 s; with workers that served more, uWSGI
first waits its 60 s ``worker-reload-mercy`` for them ("NO MERCY", ~62 s in
all, seen while writing this test).  uWSGI also has no step that checks
cinder.conf before the workers load it again.

The drop-in therefore runs cinder-api as cinder's own API server under
cinder-reload (validated, drained, reloaded in place) and says so in its
comment; doc/source/admin/units.rst has these figures.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from debcinder import CONFIG, DATABASE
from harness.cinder_roots import cinder_root
from harness.commands import wait_until
from harness.namespaces import BASE_PATH, PackageRootNamespace

pytestmark = [pytest.mark.debian, pytest.mark.sysv]

API = "http://127.0.0.1:8776/"
API_CONFIG = (
    "[DEFAULT]\nauth_strategy = noauth\ntransport_url = fake://\nstate_path = /var/lib/cinder\n"
    f"{DATABASE}[oslo_concurrency]\nlock_path = /var/lock/cinder\n"
)


def _get() -> int:
    """The HTTP status of the API's version document (300), or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(API, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


@pytest.fixture
def sid_root() -> Iterator[PackageRootNamespace]:
    workdir = Path(tempfile.mkdtemp(prefix="cr-api-"))
    workdir.chmod(0o755)
    ns = PackageRootNamespace(cinder_root("sid"), workdir, binds=[workdir], systemd_run_dir=False)
    ns.start("/bin/sleep infinity", {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/root"})
    try:
        yield ns
    finally:
        log = ns.host_path("/var/log/cinder/cinder-api.log")
        if log.exists():
            print(f"----- cinder-api.log -----\n{log.read_text(errors='replace')[-3000:]}")
        ns.kill_all()
        ns.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def test_uwsgi_graceful_reload_stops_debians_cinder_api(sid_root: PackageRootNamespace) -> None:
    argv = shlex.split(sid_root.run(["/etc/init.d/cinder-api", "show-args"]).check().stdout)
    assert argv[0] == "/usr/bin/uwsgi_python3" and "/etc/cinder/cinder-api-uwsgi.ini" in argv, argv
    ini = sid_root.host_path("/etc/cinder/cinder-api-uwsgi.ini").read_text().splitlines()
    assert "exit-on-reload = true" in ini and "lazy-apps = true" in ini, ini
    assert _get() == 0, "something else answers on 127.0.0.1:8776"

    sid_root.write_file(CONFIG, API_CONFIG)
    sid_root.run(
        [
            "sh",
            "-ec",
            f"cinder-manage --config-file {CONFIG} db sync >/dev/null 2>&1\n"
            "chown cinder /var/lib/cinder/cinder.sqlite\ninstall -d -o cinder /run/lock/cinder\n",
        ],
        timeout=300,
    ).check()
    sid_root.run(["/etc/init.d/cinder-api", "start"]).check()  # Debian's script, Debian's server
    log_path = sid_root.host_path("/var/log/cinder/cinder-api.log")
    workers = int(next(line.split("=")[1] for line in ini if line.startswith("processes")))
    # Every worker has loaded cinder (lazy-apps: each on its own), as uWSGI logs it.
    wait_until(
        lambda: (
            log_path.read_text(errors="replace").count("WSGI app 0 (mountpoint='') ready") if log_path.exists() else 0
        ),
        lambda ready: ready >= workers,
        timeout=180,
        what=f"{workers} uWSGI workers with cinder loaded",
    )
    assert _get() == 300
    master = int(sid_root.host_path("/run/cinder/cinder-api.pid").read_text())

    os.kill(master, signal.SIGHUP)  # uWSGI's own graceful reload
    sent = time.monotonic()
    gone = wait_until(
        lambda: (os.path.exists(f"/proc/{master}"), _get()),
        lambda seen: not seen[0],
        timeout=120,
        what="the uWSGI master after SIGHUP",
    )
    after = time.monotonic() - sent

    # No API at all: the "reload" ended the service.  How long it took depends
    # on the workers (up to uWSGI's 60 s worker-reload-mercy); not asserted.
    assert gone[1] == 0, gone
    log = sid_root.host_path("/var/log/cinder/cinder-api.log").read_text(errors="replace")
    assert "GAME OVER" in log, log[-2000:]
    print(f"uWSGI master {master} exited {after:.1f}s after SIGHUP; NO MERCY in log: {'NO MERCY' in log}")
