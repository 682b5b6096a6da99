"""Live demo of cinder-reload on embedded defaults: real cinder-volume, real systemd.

cinder 29 from PyPI (a cached virtualenv), sqlite, ``transport_url =
fake://``, two ``FakeLoggingVolumeDriver`` backends, and the rendered
``cinder-volume.service`` (the committed unit, with this run's paths and no
``User=``) in a private systemd 252 user manager that touches nothing on the
host.  Then what an operator does:

1. edit one backend's option and ``systemctl reload cinder-volume``;
2. break the file and reload again.

Everything printed is what the operator would see.  ``--reference`` runs the
short version on the project's reference daemon instead (no cinder, no
systemd: a second).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for sub in ("tests", "tests/cinder"):
    sys.path.insert(0, str(REPO / sub))

from cinder_reload.render import RenderSpec, render_unit  # noqa: E402


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def show(prompt: str, result_stdout: str, code: int, seconds: float | None = None) -> None:
    print(f"$ {prompt}")
    if result_stdout.strip():
        print(result_stdout.rstrip())
    took = f", {seconds:.2f}s" if seconds is not None else ""
    print(f"(exit status {code}{took})", flush=True)


def cinder_demo() -> int:
    from cinder_venv import cinder_venv  # noqa: PLC0415 - tests/cinder on sys.path above
    from cinderproc import children_of, db_template, volume_config  # noqa: PLC0415
    from harness.managers import SystemdHost252  # noqa: PLC0415

    say("Preparing cinder 29 from PyPI (a cached virtualenv; the first run takes a few minutes)")
    venv = cinder_venv()
    print(f"cinder venv: {venv}")
    work = Path(tempfile.mkdtemp(prefix="cinder-reload-demo-"))
    failures = 0
    manager = None
    try:
        db_template(venv, work / "db")
        for sub in ("state", "lock"):
            (work / sub).mkdir()
        shutil.copy(work / "db" / "cinder.sqlite", work / "cinder.sqlite")
        conf = work / "cinder.conf"
        good = volume_config(work)
        conf.write_text(good)

        say("Starting cinder-volume from the rendered unit in a private systemd 252 user manager")
        manager = SystemdHost252(work)
        spec = RenderSpec(
            systemd_version=252,
            cinder_reload=str(venv / "bin" / "cinder-reload"),
            user=None,
            group=None,
            config_files=(str(conf),),
            hardening=False,
        )
        (service,) = [s for s in spec.services if s.name == "cinder-volume"]
        unit_text = render_unit(spec, service)
        manager.install_unit("cinder-volume.service", unit_text)
        for line in unit_text.splitlines():
            if line.startswith(("Type=", "ExecStart=", "ExecReload=", "TimeoutStartSec=")):
                print(f"  {line}")
        started = manager.start("cinder-volume.service", timeout=180)
        show("systemctl start cinder-volume", started.stdout + started.stderr, started.returncode)
        props = manager.show("cinder-volume.service")
        main = int(props["MainPID"])
        pids = {main} | children_of(main)
        print(f"MainPID={main} workers={sorted(pids - {main})} ActiveState={props['ActiveState']}")
        print(f"StatusText={props['StatusText']}")
        state_dir = manager.host_path(f"{manager.runtime_dir}/cinder")

        def reload() -> tuple[int, float]:
            t0 = time.monotonic()
            result = manager.reload("cinder-volume.service", timeout=150)
            took = time.monotonic() - t0
            show("systemctl reload cinder-volume", result.stdout + result.stderr, result.returncode, took)
            return result.returncode, took

        def operator_view() -> None:
            p = manager.show("cinder-volume.service")
            now = {int(p["MainPID"])} | children_of(int(p["MainPID"]))
            print(f"ActiveState={p['ActiveState']} SubState={p['SubState']} NRestarts={p['NRestarts']} "
                  f"same MainPID={int(p['MainPID']) == main} workers={sorted(now - {main})}")
            print(f"StatusText={p['StatusText']}")

        say("Operator edits [fake1] volume_backend_name = fake1-gold, then reloads")
        conf.write_text(good.replace("volume_backend_name = fake1", "volume_backend_name = fake1-gold"))
        code, _ = reload()
        failures += code != 0
        operator_view()
        status = subprocess.run(
            [str(venv / "bin" / "cinder-reload"), "status", "cinder-volume", "--state-dir", str(state_dir)],
            capture_output=True, text=True, check=False,
        )
        show("cinder-reload status cinder-volume", status.stdout + status.stderr, status.returncode)
        log = (work / "cinder-volume.log").read_text(errors="replace")
        print("cinder-volume.log:", *[f"  {ln.split(' INFO ', 1)[-1]}" for ln in log.splitlines()
                                      if "replacing its worker" in ln or "the old one (pid" in ln][-2:], sep="\n")

        say("Operator breaks the file (a section header without ']') and reloads")
        conf.write_text(conf.read_text() + "[fake2\n")
        code, _ = reload()
        failures += code == 0
        status_text = manager.systemctl("status", "--lines=0", "cinder-volume.service").stdout
        print("$ systemctl status cinder-volume")
        print("\n".join(f"  {ln.strip()}" for ln in status_text.splitlines() if "Status:" in ln or "Active:" in ln))
        operator_view()
        doc = json.loads((state_dir / "cinder-volume.reload.json").read_text())
        print(f"state file: result={doc['result']} problems={doc['problems']}")
        failures += manager.show("cinder-volume.service")["ActiveState"] != "active"

        stopped = manager.stop("cinder-volume.service", timeout=120)
        show("systemctl stop cinder-volume", stopped.stdout + stopped.stderr, stopped.returncode)
    finally:
        if manager is not None:
            manager.close()
        shutil.rmtree(work, ignore_errors=True)
    say("Demo finished" + ("" if not failures else f" with {failures} unexpected result(s)"))
    return 1 if failures else 0


def reference_demo() -> int:
    from helpers import BASE_CONFIG, CINDER_RELOAD, RefDaemon  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="cinder-reload-demo-"))
    config = BASE_CONFIG.replace("reinit_seconds = 0", "reinit_seconds = 0.5")
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))
    failures = 0
    say("Reference daemon with a real sd_notify socket")
    with RefDaemon(work, config) as daemon:
        state = ["--state-dir", str(daemon.state_dir)]
        for label, text, expected in (
            ("edit [backend1] label = gold", config.replace("label = one", "label = gold"), 0),
            ("break the file", config + "[backend2\n", 1),
        ):
            say(f"Operator: {label}, then reload")
            daemon.edit(text)
            argv = [*CINDER_RELOAD, "signal", "refdaemon", "--pid", str(daemon.pid), "--wait", *state]
            result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            show("cinder-reload signal refdaemon --pid PID --wait", result.stdout + result.stderr, result.returncode)
            print("sd_notify:", daemon.notify.raw[-1].replace("\n", " | "))
            print("backend1 answers:", daemon.ask("backend1"))
            failures += result.returncode != expected
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", action="store_true", help="the one-second version on the reference daemon")
    args = parser.parse_args()
    return reference_demo() if args.reference else cinder_demo()


if __name__ == "__main__":
    sys.exit(main())
