"""Reference daemon: a tiny service that uses cinder-reload's public API.

It serves a UNIX stream socket: a client sends a backend name (``backend1``
or ``backend2``) or ``stats`` (in-flight counts) and a newline; the daemon answers, after ``[DEFAULT]
op_seconds``, with that backend's current label and its object's generation.
Each request is an operation tracked by the backend's drain gate, so tests
can hold operations in flight across a reload.

Options (oslo.config):
  [DEFAULT] debug (mutable), greeting (immutable, restart-only), op_seconds
            (mutable), reinit_seconds (mutable: makes a re-initialisation take
            measurable time), drain_timeout, token (mutable, secret)
  [backend1], [backend2] label, password (secret), fail_reinit

Run: python tests/refdaemon.py --config-file FILE --socket PATH [--pidfile F] [--eventlet]
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__" and "--eventlet" in sys.argv:  # must precede every other import
    import eventlet

    eventlet.monkey_patch()

import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from oslo_config import cfg  # noqa: E402

from cinder_reload import GroupChange, ReloadEngine  # noqa: E402
from cinder_reload.lint import CheckHints  # noqa: E402

LOG = logging.getLogger("refdaemon")
BACKENDS = ("backend1", "backend2")

DEFAULT_OPTS = [
    cfg.BoolOpt("debug", default=False, mutable=True, help="log at DEBUG"),
    cfg.StrOpt("greeting", default="hello", help="restart-only: read once at start"),
    cfg.FloatOpt("op_seconds", default=0.0, min=0.0, mutable=True, help="time each request takes"),
    cfg.FloatOpt("reinit_seconds", default=0.0, min=0.0, mutable=True, help="time a re-initialisation takes"),
    cfg.FloatOpt("drain_timeout", default=30.0, min=0.1, help="seconds a reload may wait for requests"),
    cfg.StrOpt("token", secret=True, mutable=True, help="a mutable secret: applied live, never shown"),
    cfg.FloatOpt(
        "drain_report_seconds",
        default=3.0,
        min=0.05,
        help="while draining, report (EXTEND_TIMEOUT_USEC, STATUS=) this often",
    ),
]
BACKEND_OPTS = [
    cfg.StrOpt("label", default="unset", help="what the backend answers"),
    cfg.StrOpt("password", secret=True, help="a secret, never to be shown"),
    cfg.BoolOpt("fail_reinit", default=False, help="make the next re-initialisation of this backend fail"),
    cfg.IntOpt("port", default=1, min=1, max=65535, help="a typed option for bad-value tests"),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Options provider, also used by ``cinder-reload check --options``."""
    conf.register_opts(DEFAULT_OPTS)
    for name in BACKENDS:
        conf.register_opts(BACKEND_OPTS, group=name)


def register_check_opts(conf: cfg.ConfigOpts) -> CheckHints:
    """Options provider for ``check`` tests: the daemon's, plus the kinds a
    real service has that the daemon does not need: a CLI flag whose value
    may come from the file (oslo.log's ``--debug``), a deprecated name, an
    option deprecated for removal, and backend sections the configuration
    requires (cinder's ``enabled_backends``)."""
    register_opts(conf)
    conf.register_cli_opt(cfg.BoolOpt("verbose", default=False, help="a CLI flag, like oslo.log's --debug"))
    conf.register_opt(cfg.StrOpt("motd", deprecated_name="banner", help="renamed from banner"))
    conf.register_opt(cfg.StrOpt("old_knob", deprecated_for_removal=True, help="going away"))
    return CheckHints(required_sections=BACKENDS)


class Backend:
    """Stands in for a Cinder volume driver: built from its config group."""

    def __init__(self, conf: cfg.ConfigOpts, name: str, generation: int) -> None:
        group = getattr(conf, name)
        if group.fail_reinit:
            # Quoting its credentials, as a driver's connection error quotes a URL.
            raise RuntimeError(
                f"{name}: driver refused to initialise (fail_reinit = true) with password {group.password}"
            )
        self.name = name
        self.label = group.label
        self.generation = generation


class RefDaemon:
    def __init__(self, conf: cfg.ConfigOpts, socket_path: str, state_dir: str | None) -> None:
        self.conf = conf
        self.engine = ReloadEngine(
            "refdaemon",
            conf,
            state_dir=state_dir,
            handle_sigterm=True,
            drain_timeout=conf.drain_timeout,
            slow_drain_after=conf.drain_report_seconds,
        )
        self.backends = {name: Backend(conf, name, 0) for name in BACKENDS}
        for name in BACKENDS:
            self.engine.reinitializers.register(name, self._rebuild)
        self.socket_path = socket_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def _rebuild(self, change: GroupChange) -> None:
        time.sleep(self.conf.reinit_seconds)
        old = self.backends[change.group]
        new = Backend(self.conf, change.group, old.generation + 1)  # build first...
        self.backends[change.group] = new  # ...then swap
        LOG.info(
            "backend %s re-initialised: label %r -> %r (options: %s)",
            change.group,
            old.label,
            new.label,
            ", ".join(change.options),
        )

    def handle(self, client: socket.socket) -> None:
        with client:
            name = client.makefile("r").readline().strip()
            if name == "waits":  # operations that waited on a reload, per scope: count and seconds
                parts = []
                for b in BACKENDS:
                    waits = list(self.engine.gates.scope(b).waits)
                    parts.append(f"{b}={len(waits)}:{','.join(f'{w:.6f}' for w in waits)}")
                client.sendall((" ".join(parts) + "\n").encode())
                return
            if name == "stats":  # in-flight operations per drain scope, for tests
                counts = " ".join(f"{b}={self.engine.gates.scope(b).in_flight}" for b in BACKENDS)
                client.sendall(f"{counts}\n".encode())
                return
            if name not in self.backends:
                client.sendall(f"error unknown backend {name!r}\n".encode())
                return
            with self.engine.gates.scope(name).operation():
                time.sleep(self.conf.op_seconds)
                backend = self.backends[name]
                reply = f"{name} label={backend.label} generation={backend.generation} greeting={self.conf.greeting}"
            client.sendall((reply + "\n").encode())

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # listener closed: stopping
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def run(self, startup_seconds: float = 0.0, pidfile: Path | None = None) -> int:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.listener.bind(self.socket_path)
        self.listener.listen(64)
        threading.Thread(target=self.serve, daemon=True).start()
        with self.engine.signals():
            # The pidfile only once the handler is in: whoever reads it may
            # send SIGHUP at once, and SIGHUP's default action is to terminate.
            if pidfile is not None:
                pidfile.write_text(f"{os.getpid()}\n")
            # A slow start: SIGHUPs arriving now are recorded and run after ready().
            time.sleep(startup_seconds)
            self.engine.ready(f"Serving {len(self.backends)} backends")
            self.engine.run()  # returns on SIGTERM, after STOPPING=1
        self.listener.close()
        LOG.info("refdaemon stopped")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--pidfile")
    parser.add_argument("--state-dir")
    parser.add_argument("--log-file")
    parser.add_argument("--eventlet", action="store_true", help="monkey-patch with eventlet, as cinder does")
    parser.add_argument("--startup-seconds", type=float, default=0.0, help="delay before READY=1")
    ours, rest = parser.parse_known_args(argv)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(rest, project="refdaemon", prog="refdaemon", default_config_files=[], default_config_dirs=[])
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if ours.log_file:
        handlers.append(logging.FileHandler(ours.log_file))
    logging.basicConfig(
        level=logging.DEBUG if conf.debug else logging.INFO,
        handlers=handlers,
        format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s",
    )
    conf.register_mutate_hook(lambda c, fresh: logging.getLogger().setLevel(logging.DEBUG if c.debug else logging.INFO))
    daemon = RefDaemon(conf, ours.socket, ours.state_dir)
    try:
        return daemon.run(ours.startup_seconds, Path(ours.pidfile) if ours.pidfile else None)
    finally:
        if ours.pidfile:
            Path(ours.pidfile).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
