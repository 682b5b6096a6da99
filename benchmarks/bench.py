"""cinder-reload benchmark suite: measured figures, each with a baseline from
the same run.

    .venv/bin/python benchmarks/bench.py [--quick] [--json OUT] [--markdown OUT]

Sections (each can be selected with --only NAME):

* tracking  - cost of one operation wrapped in a drain gate vs the bare call
* diff      - cost of validating + diffing a candidate config as options and
              backends grow, vs oslo.config's own mutate_config_files() on it
* reload    - SIGHUP -> READY=1 of the reference daemon vs a full restart
              (spawn -> READY=1) of the same daemon
* waits     - under a steady request load, how many requests waited because of
              a reload, and for how long (p50/p99), on the changed backend and on
              the unchanged one
* execreload - what the synchronous ExecReload= (systemd < 253) adds to a
              `systemctl reload` of the reference daemon under a real systemd 252
              user manager: the command as shipped (entry.py's fast path) against
              the same command through the whole command line interface, and the
              manager's own cost of running any ExecReload= (`kill -HUP`)

Figures for real cinder-volume and for `systemctl reload` come from
benchmarks/bench_managers.py when those harnesses are available.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ENTRY_PY = REPO / "cinder_reload" / "entry.py"
sys.path.insert(0, str(REPO / "tests"))

from helpers import BASE_CONFIG, RefDaemon  # noqa: E402
from oslo_config import cfg  # noqa: E402
from stack.load import percentile  # noqa: E402

from cinder_reload.config import CandidateLoader, load_candidate, snapshot  # noqa: E402
from cinder_reload.diff import diff_values  # noqa: E402
from cinder_reload.drain import DrainGate  # noqa: E402


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "os": Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?",
    }


# -- tracking ---------------------------------------------------------------
def bench_tracking(quick: bool) -> list[dict[str, Any]]:
    gate = DrainGate("b1")

    def work() -> int:
        return 1

    tracked = gate.track(work)
    number = 50_000 if quick else 500_000
    bare = min(timeit.repeat(work, number=number, repeat=5)) / number
    wrapped = min(timeit.repeat(tracked, number=number, repeat=5)) / number
    return [
        {
            "figure": "per-operation cost of in-flight tracking",
            "value": f"{wrapped * 1e9:.0f} ns",
            "baseline": f"{bare * 1e9:.0f} ns (untracked call)",
            "ratio": wrapped / bare,
            "extra_ns": (wrapped - bare) * 1e9,
        }
    ]


# -- diff ---------------------------------------------------------------------
def _service_conf(tmp: Path, backends: int, options: int) -> tuple[cfg.ConfigOpts, Path]:
    path = tmp / f"svc-{backends}-{options}.conf"
    lines = ["[DEFAULT]", "debug = false"]
    for b in range(backends):
        lines.append(f"[backend{b}]")
        lines.extend(f"opt{o} = value{o}" for o in range(options))
    path.write_text("\n".join(lines) + "\n")
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.BoolOpt("debug", mutable=True))
    for b in range(backends):
        conf.register_opts([cfg.StrOpt(f"opt{o}") for o in range(options)], group=f"backend{b}")
    conf(["--config-file", str(path)], default_config_files=[], default_config_dirs=[])
    # change one option of one backend, as an operator would
    path.write_text(path.read_text().replace("[backend0]\nopt0 = value0", "[backend0]\nopt0 = changed", 1))
    return conf, path


def bench_diff(quick: bool) -> list[dict[str, Any]]:
    rows = []
    shapes = [(2, 20), (10, 50), (50, 50)] if quick else [(2, 20), (10, 50), (50, 50), (50, 200)]
    with tempfile.TemporaryDirectory() as tmp:
        for backends, options in shapes:
            conf, _ = _service_conf(Path(tmp), backends, options)
            groups = {f"backend{b}" for b in range(backends)}
            repeat = 3 if quick else 7

            # Defaults bind this iteration's objects (the closures run right here).
            def ours(conf: cfg.ConfigOpts = conf, groups: set[str] = groups) -> None:
                candidate = load_candidate(conf)
                diff = diff_values(snapshot(conf), snapshot(candidate), groups)
                assert len(diff.changes) == 1

            # As a running service validates at its second reload and later:
            # the scratch object reused, only the edited section read.
            loader = CandidateLoader(conf)
            loader.load()

            def reloading(
                conf: cfg.ConfigOpts = conf, loader: CandidateLoader = loader, groups: set[str] = groups
            ) -> None:
                candidate = loader.load()
                diff = diff_values(snapshot(conf, loader.scope), snapshot(candidate, loader.scope), groups)
                assert len(diff.changes) == 1

            def oslo(conf: cfg.ConfigOpts = conf) -> None:
                conf.mutate_config_files()

            t_ours = min(timeit.repeat(ours, number=1, repeat=repeat))
            t_reloading = min(timeit.repeat(reloading, number=1, repeat=repeat))
            t_oslo = min(timeit.repeat(oslo, number=1, repeat=repeat))
            total = backends * options
            baseline = f"{t_oslo * 1e3:.1f} ms (oslo.config mutate_config_files)"
            rows.append(
                {
                    "figure": f"validate + diff, {backends} backends x {options} options ({total} options)",
                    "value": f"{t_ours * 1e3:.1f} ms",
                    "baseline": baseline,
                    "ratio": t_ours / t_oslo,
                }
            )
            rows.append(
                {
                    "figure": f"validate + diff in a running service (scratch reused, the edited section read), "
                    f"{backends} backends x {options} options",
                    "value": f"{t_reloading * 1e3:.1f} ms",
                    "baseline": baseline,
                    "ratio": t_reloading / t_oslo,
                }
            )
    return rows


# -- reload vs restart --------------------------------------------------------
def _time_to_ready(d: RefDaemon, start_index: int, t0: float) -> float:
    d.notify.wait_for(lambda m: m.get("READY") == "1", 30, start=start_index)
    return time.monotonic() - t0


def bench_reload(quick: bool) -> list[dict[str, Any]]:
    runs = 5 if quick else 20
    reloads: list[float] = []
    restarts: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(runs):
            (work / f"r{i}").mkdir()
            t0 = time.monotonic()
            d = RefDaemon(work / f"r{i}", BASE_CONFIG)
            restarts.append(_time_to_ready(d, 0, t0))
            d.stop()
        (work / "reload").mkdir()
        d = RefDaemon(work / "reload", BASE_CONFIG)
        d.wait_ready()
        try:
            for i in range(runs):
                d.edit(BASE_CONFIG.replace("label = one", f"label = v{i}"))
                index = len(d.notify.messages)
                t0 = time.monotonic()
                os.kill(d.pid, signal.SIGHUP)
                reloads.append(_time_to_ready(d, index, t0))
        finally:
            d.stop()
    med_reload, med_restart = statistics.median(reloads), statistics.median(restarts)
    return [
        {
            "figure": "reference daemon: SIGHUP -> READY=1 (one backend re-initialised), median",
            "value": f"{med_reload * 1e3:.1f} ms",
            "baseline": f"{med_restart * 1e3:.1f} ms (full restart: spawn -> READY=1)",
            "ratio": med_reload / med_restart,
            "samples": runs,
        }
    ]


# -- waits under load ---------------------------------------------------------
def _parse_waits(text: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for part in text.split():
        name, _, rest = part.partition("=")
        _count, _, values = rest.partition(":")
        out[name] = [float(v) for v in values.split(",") if v]
    return out


def bench_waits(quick: bool) -> list[dict[str, Any]]:
    reloads = 5 if quick else 20
    config = BASE_CONFIG.replace("op_seconds = 0", "op_seconds = 0.05").replace(
        "reinit_seconds = 0", "reinit_seconds = 0.1"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = RefDaemon(Path(tmp), config)
        d.wait_ready()
        stop = threading.Event()
        latencies: dict[str, list[float]] = {"backend1": [], "backend2": []}
        errors: list[str] = []

        def client(backend: str) -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                reply = d.ask(backend)
                latencies[backend].append(time.monotonic() - t0)
                if not reply.startswith(backend):
                    errors.append(reply)

        threads = [threading.Thread(target=client, args=(b,)) for b in ("backend1", "backend2") for _ in range(4)]
        try:
            for t in threads:
                t.start()
            for i in range(reloads):
                d.edit(config.replace("label = one", f"label = v{i}"))
                result = d.reload()
                assert result.returncode == 0, result.stderr
            stop.set()
            for t in threads:
                t.join(10)
            waits = _parse_waits(d.ask("waits"))
        finally:
            stop.set()
            d.stop()
    for backend, role in (("backend1", "changed"), ("backend2", "unchanged")):
        w = waits.get(backend, [])
        served = len(latencies[backend])
        rows.append(
            {
                "figure": f"requests that waited on a reload, {role} backend ({reloads} reloads)",
                "value": f"{len(w)} of {served}; waited p50 {percentile(w, 50) * 1e3:.0f} ms, "
                f"p99 {percentile(w, 99) * 1e3:.0f} ms",
                "baseline": f"request latency p50 {percentile(latencies[backend], 50) * 1e3:.0f} ms, "
                f"p99 {percentile(latencies[backend], 99) * 1e3:.0f} ms",
                "ratio": len(w) / served if served else 0.0,
                "errors": len(errors),
            }
        )
    return rows


# -- what ExecReload= adds to `systemctl reload` ----------------------------------
#: ExecReload= variants, measured side by side on one unit (a drop-in switches them).
_EXEC_RELOAD = {
    # As shipped: the console script, entry.py's fast path.
    "shipped": "{cinder_reload} signal refdaemon --pid $MAINPID --wait --timeout 25",
    # The same command line through cli.main: argparse and the whole CLI
    # imported before the SIGHUP, as every reload did before entry.py.
    "full_cli": "{python} -c 'import sys; from cinder_reload.cli import main; sys.exit(main())' "
    "signal refdaemon --pid $MAINPID --wait --timeout 25",
    # `render --python PYTHON`: the module file without the interpreter's site step.
    "no_site": "{python} -S {entry} signal refdaemon --pid $MAINPID --wait --timeout 25",
    # No waiting at all (and so no honest result): what the manager itself
    # costs for running an ExecReload= process.
    "kill": "/bin/kill -HUP $MAINPID",
}


def bench_exec_reload(quick: bool) -> list[dict[str, Any]]:
    from harness.managers import SystemdHost252
    from harness.refservice import SystemdRefService, default_config

    rounds = 8 if quick else 40
    work = Path(tempfile.mkdtemp(prefix="crbench-exec."))
    work.chmod(0o755)
    manager = SystemdHost252(work)
    # At debug (the harness's default) the manager logs every D-Bus message:
    # a cost of the harness, not of the reload.
    manager.systemctl("log-level", "info")
    added: dict[str, list[float]] = {name: [] for name in _EXEC_RELOAD}
    cycles: list[float] = []
    noop: list[float] = []
    try:
        service = SystemdRefService(manager, work)
        service.write_config(default_config())
        assert service.start().returncode == 0
        service.wait_answering()
        for i in range(rounds):
            for name, command in _EXEC_RELOAD.items():
                line = command.format(cinder_reload=manager.cinder_reload, python=manager.python, entry=ENTRY_PY)
                manager.install_unit("refdaemon.service.d/bench.conf", f"[Service]\nExecReload=\nExecReload={line}\n")
                service.write_config(default_config(label1=f"v{i}-{name}"))
                before = service.generation()
                result = service.reload()
                assert result.returncode == 0, result
                doc = wait_for_generation(service, before + 1)
                if name == "kill":
                    added[name].append(result.duration)  # the cycle runs after the command returned
                else:
                    added[name].append(result.duration - doc["duration_s"])
                    cycles.append(doc["duration_s"])
            noop.append(manager.systemctl("show", "-p", "MainPID", "refdaemon.service").duration)
    finally:
        try:
            service.stop()
        finally:
            manager.close()
    floor = statistics.median(noop)
    shipped, full, no_site, kill = (
        statistics.median(added[n]) - floor for n in ("shipped", "full_cli", "no_site", "kill")
    )
    common = {"samples": rounds, "raw": {**{f"{n}_s": v for n, v in added.items()}, "noop_s": noop, "cycle_s": cycles}}
    return [
        {
            "figure": "`systemctl reload` (systemd 252, ExecReload= `cinder-reload signal --wait`) "
            "beyond the reload cycle and a no-op `systemctl show`, median",
            "value": f"{shipped * 1e3:.1f} ms",
            "baseline": f"{full * 1e3:.1f} ms (the same command through the whole CLI, as before entry.py)",
            "ratio": shipped / full if full else 0.0,
            "overhead_ms": shipped * 1e3,
            **common,
        },
        {
            "figure": "`systemctl reload` with ExecReload= `PYTHON -S .../cinder_reload/entry.py signal --wait` "
            "(`render --python`: no site step) beyond the cycle and a no-op `systemctl show`, median",
            "value": f"{no_site * 1e3:.1f} ms",
            "baseline": f"{shipped * 1e3:.1f} ms (cinder-reload signal --wait, the script)",
            "ratio": no_site / shipped if shipped else 0.0,
            "overhead_ms": no_site * 1e3,
            **common,
        },
        {
            "figure": "... of which the manager's own cost of any ExecReload= (`/bin/kill -HUP $MAINPID`, "
            "which does not wait), median",
            "value": f"{kill * 1e3:.1f} ms",
            "baseline": f"{shipped * 1e3:.1f} ms (cinder-reload signal --wait, as shipped)",
            "ratio": kill / shipped if shipped else 0.0,
            **common,
        },
    ]


def wait_for_generation(service: Any, generation: int, timeout: float = 30.0) -> dict[str, Any]:
    """The reference daemon's state document once its cycle ``generation`` finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = service.state()
        if doc and int(doc.get("generation") or 0) >= generation and not doc.get("in_progress"):
            return dict(doc)
        time.sleep(0.01)
    raise TimeoutError(f"reload #{generation} of the reference daemon did not finish in {timeout:g}s")


SECTIONS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "tracking": bench_tracking,
    "diff": bench_diff,
    "reload": bench_reload,
    "waits": bench_waits,
    "execreload": bench_exec_reload,
}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpu']} ({m['cores']} cores), Debian {m['os']}, "
        f"kernel {m['kernel']}, Python {m['python']}.",
        "",
        "| figure | measured | baseline (same run) | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['figure']} | {row['value']} | {row['baseline']} | {row['ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument(
        "--include",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="add the rows of another suite's report (benchmarks/bench_stack.py writes benchmarks/results/stack.json)",
    )
    args = parser.parse_args()
    # oslo.config warns about every immutable change during the baseline runs.
    logging.disable(logging.WARNING)
    rows: list[dict[str, Any]] = []
    for name in args.only or list(SECTIONS):
        print(f"running {name}...", file=sys.stderr, flush=True)
        rows.extend(dict(r, section=name) for r in SECTIONS[name](args.quick))
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": args.quick, "rows": rows}
    table = markdown(report)
    for path in args.include:
        other = json.loads(path.read_text())
        # Its own heading: another run, perhaps another day or machine.
        table += f"\n### {other.get('suite', path.name)}\n\n" + markdown(other)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
