"""Live demo of cinder-reload on embedded defaults.

Starts the reference daemon (tests/refdaemon.py: two backends behind drain
gates) with a real sd_notify socket standing in for systemd, then does what
an operator does: edit a backend option and reload, then break the file and
reload.  Everything printed is what the operator would see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import BASE_CONFIG, CINDER_RELOAD, RefDaemon  # noqa: E402


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def shell(*args: str) -> int:
    print("$ " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
    # PYTHONPATH: `check --options refdaemon:register_opts` imports the demo service.
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    sys.stdout.write(result.stdout + result.stderr)
    print(f"(exit status {result.returncode})", flush=True)
    return result.returncode


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="cinder-reload-demo-"))
    config = BASE_CONFIG.replace("reinit_seconds = 0", "reinit_seconds = 0.5")
    say(f"Starting the reference service (config {work / 'refdaemon.conf'})")
    daemon = RefDaemon(work, config)
    failures = 0
    try:
        daemon.wait_ready()
        print("sd_notify:", daemon.notify.raw[-1].replace("\n", " | "))
        print("backend1 answers:", daemon.ask("backend1"))
        cli = [*CINDER_RELOAD]
        state = ["--state-dir", str(daemon.state_dir)]

        say("Operator edits [backend1] label = gold and reloads (waits for the cycle)")
        daemon.edit(config.replace("label = one", "label = gold"))
        failures += shell(*cli, "signal", "refdaemon", "--pid", str(daemon.pid), "--wait", *state) != 0
        print("sd_notify:", " || ".join(m.replace("\n", " | ") for m in daemon.notify.raw[-2:]))
        print("backend1 answers:", daemon.ask("backend1"))
        print("backend2 answers:", daemon.ask("backend2"), "(untouched)")
        shell(*cli, "status", "refdaemon", *state)

        say("Operator breaks the file (a section header without ']') and reloads")
        daemon.edit(config.replace("label = one", "label = gold") + "[backend2\n")
        failures += shell(*cli, "signal", "refdaemon", "--pid", str(daemon.pid), "--wait", *state) != 1
        print("sd_notify:", daemon.notify.raw[-1].replace("\n", " | "))
        print(f"pid {daemon.pid} still running:", daemon.proc.poll() is None)
        print("backend1 still answers on the old config:", daemon.ask("backend1"))

        say("Checking a config before reloading, like nginx -t")
        shell(
            *cli,
            "check",
            "refdaemon",
            "--options",
            "refdaemon:register_opts",
            "--",
            "--config-file",
            str(daemon.config_file),
        )
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    say("Demo finished" + ("" if not failures else f" with {failures} unexpected result(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
