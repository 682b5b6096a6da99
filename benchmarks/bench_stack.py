"""Figures from the full Cinder stack (issue 7), each with its baseline from the same run.

    .venv/bin/python benchmarks/bench_stack.py [--quick] [--backends 2,10,50]
        [--json benchmarks/results/stack.json] [--markdown OUT] [--only volume|waits]

Everything runs for real: MariaDB and RabbitMQ on loopback (a database and a
vhost of the run's own), cinder-api, cinder-scheduler and cinder-volume from
the cached cinder venv through the rendered units (``cinder-reload render``,
flavour for systemd < 253: ``Type=notify`` + synchronous ``ExecReload=``)
under a systemd 252 user manager (tests/harness), the slow test driver
(tests/stack/slowdriver.py).

Sections:

* volume - for cinder-volume with N backends (default 2, 10, 50), a change
  to one backend (its worker is replaced): SIGHUP -> READY=1, the new
  worker's own start (fork to consuming) and the changed backend's RPC pause
  (old worker stops consuming -> new one consumes; both from the state
  file's per-worker record, CLOCK_MONOTONIC), each against ``systemctl
  restart`` of the same unit; the CPU the N-1 unchanged workers spent during
  the reloads against the same workers idle for as long; and ``systemctl
  reload`` against the in-process cycle it runs (the overhead of the
  synchronous ``ExecReload=`` path).  SIGHUP is sent with kill(2) to the
  unit's MainPID at a CLOCK_MONOTONIC instant; READY=1 is taken at the end
  of the cycle as the engine records it in its state file
  (``started_monotonic`` + ``duration_s``, same clock), which it writes
  immediately before sending READY=1.
* waits - under the real REST load (create/extend/delete, 6 ops/s, both
  backends), 20 good reloads of one backend: the operations' latency
  (p50/p99) on the changed and on the unchanged backend, against the same
  load with no reload; failed or stuck operations counted.

* notify-reload - ``systemctl reload`` of the ``Type=notify-reload`` flavour
  (systemd 257, in the cached Debian 13 root with the cinder venv
  bind-mounted) against the in-process cycle, 2 backends.

Output rows have the shape of benchmarks/bench.py's (figure, value,
baseline, ratio), so its table generator can merge them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench import machine, markdown, percentile  # noqa: E402
from harness.managers import SystemdHost252, SystemdTrixie257, UserManager  # noqa: E402
from stack.cinderenv import CACHE, find_cinder_venv  # noqa: E402
from stack.infra import Backing, backing_services  # noqa: E402
from stack.load import LoadGenerator  # noqa: E402
from stack.scenario import CHANGED, UNCHANGED, read_json, run_reloads  # noqa: E402
from stack.stack import wait_for  # noqa: E402
from stack.units import UnitStack  # noqa: E402

#: How long the stack sits idle before the "after idle" reloads: longer than
#: it takes an idle rabbit listener's poll timeout to reach its 5 s cap.
IDLE_BEFORE = 12.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def unit_stack(backends: int, **kwargs: Any) -> Iterator[UnitStack]:
    """A stack with its own database and vhost, under a fresh systemd 252 user manager."""
    with backing_services(prefix="crbench") as backing, _unit_stack(backing, backends, **kwargs) as stack:
        yield stack


@contextmanager
def _unit_stack(backing: Backing, backends: int, systemd_version: int = 252, **kwargs: Any) -> Iterator[UnitStack]:
    workdir = Path(tempfile.mkdtemp(prefix="crbench."))
    workdir.chmod(0o755)
    venv = find_cinder_venv()
    if venv is None:
        raise SystemExit("no cinder venv: run tools/setup (tests/cinder/cinder_venv.py builds it)")
    manager: UserManager
    if systemd_version >= 253:
        # systemd 257 in the Debian 13 root: the cache (venv, deps) and the
        # venv's base interpreter bind-mounted at the same paths.
        manager = SystemdTrixie257(workdir, binds=[CACHE, venv.interpreter_prefix])
    else:
        manager = SystemdHost252(workdir)
    # The manager logs at info (its default), not debug: at debug it logs every
    # D-Bus message and job step, which added ~70 ms to each `systemctl reload`
    # here (and half as much to a no-op `systemctl show`), a cost of the
    # harness, not of the reload.  BENCH_MANAGER_LOG=debug for a failing run.
    manager.systemctl("log-level", os.environ.get("BENCH_MANAGER_LOG", "info"))
    names = tuple(f"fake{i}" for i in range(1, backends + 1))
    stack = UnitStack(
        workdir / "stack",
        venv,
        backing,
        manager=manager,
        backends=names,
        probe=names[:1],
        systemd_version=systemd_version,
        **kwargs,
    )
    try:
        stack.start(timeout=600)
        yield stack
    except BaseException:
        stack.stop()
        manager.close()
        log(f"failed; the run's files and logs are kept in {workdir}")
        raise
    stack.stop()
    manager.close()
    shutil.rmtree(workdir, ignore_errors=True)


def _cycle_end(stack: UnitStack, generation_before: int, timeout: float = 300) -> dict[str, Any]:
    path = stack.state_dir / "cinder-volume.reload.json"

    def done() -> dict[str, Any] | None:
        doc = read_json(path)
        if doc and int(doc.get("generation") or 0) > generation_before and not doc.get("in_progress"):
            return doc
        return None

    doc = dict(wait_for(done, timeout, "the reload to finish", interval=0.02))
    # Then until the service is idle again: after READY=1 it records its
    # running configuration for `check --running` (engine.py).  The next
    # reload is timed on an idle service, as an operator meets it, not on one
    # still busy with the previous reload a few milliseconds ago.
    running = stack.state_dir / "cinder-volume.running.json"
    wait_for(
        lambda: running.exists() and running.stat().st_mtime_ns >= path.stat().st_mtime_ns,
        timeout,
        "the running configuration to be recorded",
        interval=0.005,
    )
    return doc


def _generation(stack: UnitStack) -> int:
    return int((read_json(stack.state_dir / "cinder-volume.reload.json") or {}).get("generation") or 0)


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (from /proc), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _workers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["worker"]: w for w in doc.get("workers") or []}


def bench_volume(sizes: list[int], quick: bool) -> list[dict[str, Any]]:
    """A change to one of N backends: what it costs, against a restart of the same unit."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        reloads = 3 if quick else 10
        restarts = 1 if quick or n >= 10 else 3
        log(f"volume: starting the stack with {n} backends")
        started = time.monotonic()
        with unit_stack(n) as stack:
            log(f"volume: {n} backends serving after {time.monotonic() - started:.1f}s")
            sighup: list[float] = []
            #: Each SIGHUP reload's READY=1 less its own new worker's start (paired).
            beyond_start: list[float] = []
            cycles: list[float] = []
            systemctl: list[float] = []
            paused: list[float] = []
            start: list[float] = []
            main_pid = stack.main_pid("cinder-volume")
            first = _workers(read_json(stack.state_dir / "cinder-volume.reload.json") or {})
            unchanged = [w["pid"] for name, w in first.items() if name != CHANGED]
            # Baseline for "unchanged backends do zero work": their CPU over an
            # idle stretch as long as the reloads take (periodic tasks included).
            reload_time = 0.0
            cpu_before = _cpu_seconds(unchanged)
            for i in range(2 * reloads):
                stack.config.slow_op_seconds = {CHANGED: 0.3 + 0.05 * (1 + i % 2)}
                stack.config.write()
                before = _generation(stack)
                t0 = time.monotonic()
                if i % 2 == 0:
                    # SIGHUP -> READY=1, as systemd's Type=notify-reload would send it.
                    sent = time.clock_gettime(time.CLOCK_MONOTONIC)
                    os.kill(main_pid, signal.SIGHUP)
                    doc = _cycle_end(stack, before)
                    assert doc["result"] == "ok", doc
                    sighup.append(doc["started_monotonic"] + doc["duration_s"] - sent)
                    beyond_start.append(sighup[-1] - float(_workers(doc)[CHANGED]["start_s"]))
                else:
                    result = stack.reload("cinder-volume", timeout=300)
                    assert result.returncode == 0, result
                    doc = _cycle_end(stack, before)
                    assert doc["result"] == "ok", doc
                    systemctl.append(stack.last["cinder-volume"].duration)
                    cycles.append(doc["duration_s"])
                reload_time += time.monotonic() - t0
                replaced = _workers(doc)[CHANGED]
                paused.append(float(replaced["paused_s"]))
                start.append(float(replaced["start_s"]))
                assert all(_workers(doc)[name]["pid"] == first[name]["pid"] for name in first if name != CHANGED)
            cpu_reloads = _cpu_seconds(unchanged) - cpu_before
            idle_from = _cpu_seconds(unchanged)
            time.sleep(reload_time)
            cpu_idle = _cpu_seconds(unchanged) - idle_from
            # Operators reload an idle service, not one that reloaded a
            # second ago: an idle rabbit listener polls with a timeout that
            # grows to 5 s, and used to stop only at its end.
            idle_paused: list[float] = []
            for i in range(1 if quick else 3):
                time.sleep(IDLE_BEFORE)
                stack.config.slow_op_seconds = {CHANGED: 0.3 + 0.05 * (1 + i % 2)}
                stack.config.write()
                before = _generation(stack)
                os.kill(main_pid, signal.SIGHUP)
                doc = _cycle_end(stack, before)
                assert doc["result"] == "ok", doc
                idle_paused.append(float(_workers(doc)[CHANGED]["paused_s"]))
            assert stack.main_pid("cinder-volume") == main_pid
            noop = _systemctl_round_trip(stack)
            log(f"volume: {n} backends: {2 * reloads} reloads done; restarting {restarts}x")
            restart: list[float] = []
            for _ in range(restarts):
                result = stack.restart("cinder-volume", timeout=900)
                assert result.ok, result
                restart.append(result.duration)
        med_hup, med_restart = statistics.median(sighup), statistics.median(restart)
        med_ctl, med_cycle = statistics.median(systemctl), statistics.median(cycles)
        med_pause, med_start = statistics.median(paused), statistics.median(start)
        restart_label = f"{med_restart * 1e3:.0f} ms (`systemctl restart`, {restarts}x)"
        rows.append(
            {
                "key": "sighup",
                "backends": n,
                "figure": f"cinder-volume, {n} backends: SIGHUP -> READY=1 (one backend's worker replaced), median",
                "value": f"{med_hup * 1e3:.0f} ms",
                "baseline": restart_label,
                "ratio": med_hup / med_restart,
                "samples": len(sighup),
                "raw": {"sighup_s": sighup, "restart_s": restart},
            }
        )
        med_beyond = statistics.median(beyond_start)
        rows.append(
            {
                "key": "ready_beyond_start",
                "backends": n,
                "figure": f"cinder-volume, {n} backends: SIGHUP -> READY=1 beyond that reload's own new worker's "
                "start (validation, drain, fork, the old worker's exit, the report), median",
                "value": f"+{med_beyond * 1e3:.0f} ms",
                "baseline": f"{med_start * 1e3:.0f} ms (the new worker's own start)",
                "ratio": med_beyond / med_start,
                "over_start_ms": med_beyond * 1e3,
                "samples": len(beyond_start),
                "raw": {"beyond_start_s": beyond_start},
            }
        )
        rows.append(
            {
                "key": "start",
                "backends": n,
                "figure": f"cinder-volume, {n} backends: the new worker's own start (fork to consuming), median",
                "value": f"{med_start * 1e3:.0f} ms",
                "baseline": restart_label,
                "ratio": med_start / med_restart,
                "speedup": med_restart / med_start,
                "samples": len(start),
                "raw": {"start_s": start},
            }
        )
        rows.append(
            {
                "key": "pause",
                "backends": n,
                "figure": f"cinder-volume, {n} backends: the changed backend's RPC pause (stops consuming -> new "
                "worker consumes), median",
                "value": f"{med_pause * 1e3:.0f} ms",
                "baseline": f"{med_start * 1e3:.0f} ms (the new worker's own start)",
                "ratio": med_pause / med_start,
                # Paired: each reload's pause less its own new worker's start.
                "over_start_ms": statistics.median(p - s for p, s in zip(paused, start, strict=True)) * 1e3,
                "samples": len(paused),
                "raw": {"paused_s": paused},
            }
        )
        med_idle = statistics.median(idle_paused)
        rows.append(
            {
                "key": "pause_idle",
                "backends": n,
                "figure": f"cinder-volume, {n} backends: the changed backend's RPC pause after "
                f"{IDLE_BEFORE:g} s idle, median",
                "value": f"{med_idle * 1e3:.0f} ms",
                "baseline": f"{med_pause * 1e3:.0f} ms (the pause in back-to-back reloads)",
                "ratio": med_idle / med_pause,
                "samples": len(idle_paused),
                "raw": {"paused_s": idle_paused},
            }
        )
        rows.append(
            {
                "key": "unchanged_cpu",
                "backends": n,
                "figure": f"cinder-volume, {n} backends: CPU of the {n - 1} unchanged workers during "
                f"{2 * reloads} reloads",
                "value": f"{cpu_reloads * 1e3:.0f} ms",
                "baseline": f"{cpu_idle * 1e3:.0f} ms (the same workers, idle for as long)",
                "ratio": cpu_reloads / cpu_idle if cpu_idle else 0.0,
                "extra_ms": (cpu_reloads - cpu_idle) * 1e3,
                "samples": 1,
            }
        )
        rows.append(
            {
                "key": "systemctl",
                "backends": n,
                "figure": f"cinder-volume, {n} backends: `systemctl reload` (Type=notify + ExecReload=, systemd 252)",
                "value": f"{med_ctl * 1e3:.0f} ms",
                "baseline": f"{med_cycle * 1e3:.0f} ms (the in-process cycle it waited for)",
                "ratio": med_ctl / med_cycle if med_cycle else 0.0,
                "overhead_ms": (med_ctl - med_cycle) * 1e3,
                "samples": len(systemctl),
                "raw": {"systemctl_reload_s": systemctl, "cycle_s": cycles},
            }
        )
        rows.append(
            dict(
                _overhead_row(
                    f"cinder-volume, {n} backends", "Type=notify + ExecReload=, systemd 252", systemctl, cycles, noop
                ),
                key="systemctl_overhead",
                backends=n,
            )
        )
        log(f"volume: {n} backends: " + "; ".join(f"{r['value']} vs {r['baseline']}" for r in rows[-8:]))
    return rows


def _systemctl_round_trip(stack: UnitStack, samples: int = 7) -> float:
    """Median of a `systemctl show` of the unit through the same harness: nsenter, systemctl, D-Bus."""
    assert stack.manager is not None
    unit = stack.unit("cinder-volume")
    durations = [stack.manager.systemctl("show", "-p", "MainPID", unit).duration for _ in range(samples)]
    return statistics.median(durations)


def _overhead_row(what: str, flavour: str, ctl: list[float], cycles: list[float], noop: float) -> dict[str, Any]:
    """What `systemctl reload` adds over the cycle, net of the harness's own round trip.

    Paired: each command's duration less the cycle it waited for, then the
    median (the cycles vary by tens of milliseconds from one reload to the
    next, more than what is measured here).
    """
    added = statistics.median(c - cycle for c, cycle in zip(ctl, cycles, strict=True)) - noop
    return {
        "figure": f"{what}: what `systemctl reload` ({flavour}) adds over the cycle, beyond a no-op systemctl call",
        "value": f"{added * 1e3:.0f} ms",
        "baseline": f"{noop * 1e3:.0f} ms (`systemctl show` through the same nsenter)",
        "ratio": added / noop if noop else 0.0,
        "overhead_ms": added * 1e3,
        "samples": len(ctl),
    }


def bench_notify_reload(quick: bool) -> list[dict[str, Any]]:
    """`systemctl reload` of the Type=notify-reload flavour (systemd 257) over the cycle."""
    samples = 3 if quick else 7
    ctl: list[float] = []
    cycles: list[float] = []
    with unit_stack(2, systemd_version=257) as stack:
        for i in range(samples):
            stack.config.slow_op_seconds = {CHANGED: 0.3 + 0.05 * (1 + i % 2)}
            stack.config.write()
            before = _generation(stack)
            result = stack.reload("cinder-volume", timeout=300)
            assert result.returncode == 0, result
            doc = _cycle_end(stack, before)
            assert doc["result"] == "ok", doc
            ctl.append(stack.last["cinder-volume"].duration)
            cycles.append(doc["duration_s"])
        noop = _systemctl_round_trip(stack)
    med_ctl, med_cycle = statistics.median(ctl), statistics.median(cycles)
    return [
        _overhead_row("cinder-volume, 2 backends", "Type=notify-reload, systemd 257", ctl, cycles, noop),
        {
            "figure": "cinder-volume, 2 backends: `systemctl reload` (Type=notify-reload, systemd 257)",
            "value": f"{med_ctl * 1e3:.0f} ms",
            "baseline": f"{med_cycle * 1e3:.0f} ms (the in-process cycle it waited for)",
            "ratio": med_ctl / med_cycle if med_cycle else 0.0,
            "overhead_ms": (med_ctl - med_cycle) * 1e3,
            "samples": samples,
            "raw": {"systemctl_reload_s": ctl, "cycle_s": cycles},
        },
    ]


def bench_waits(quick: bool) -> list[dict[str, Any]]:
    """REST operations under load while the changed backend's worker is replaced, against a calm phase."""
    good = 5 if quick else 20
    calm = 8.0 if quick else 20.0
    rows: list[dict[str, Any]] = []
    with unit_stack(2) as stack:
        stack.probe = None
        load = LoadGenerator(stack.api, stack.types, rate=6.0, op_deadline=60)
        load.start()
        try:
            # Baseline: the same load, no reload.
            wait_for(lambda: load.clock() - (load.started_at or 0) >= calm, calm + 5, "the calm phase", interval=0.1)
            calm_ops = len(load.ops)
            log(f"waits: calm phase done ({calm_ops} operations); {good} reloads under load")

            def reload() -> tuple[int, str]:
                result = stack.reload("cinder-volume", timeout=120)
                return result.returncode, result.stdout + result.stderr

            scenario = run_reloads(stack.config, load, reload, good=good, broken=0)
            seen = len(load.ops)
            wait_for(lambda: len(load.ops) >= seen + 6, 30, "operations after the last reload")
        finally:
            load.stop()
        assert all(r.returncode == 0 for r in scenario.records), scenario.records
        bad = load.bad()
    ops = load.operations()
    for backend, role in ((CHANGED, "changed"), (UNCHANGED, "unchanged")):
        base = [o.latency for o in ops[:calm_ops] if o.backend == backend and o.latency is not None]
        under = [o.latency for o in ops[calm_ops:] if o.backend == backend and o.latency is not None]
        rows.append(
            {
                "figure": f"REST operation latency on the {role} backend during {good} reloads "
                f"({load.summary()['ops_per_s']:.1f} ops/s; {len(bad)} failed or stuck)",
                "value": f"p50 {percentile(under, 50) * 1e3:.0f} ms, p99 {percentile(under, 99) * 1e3:.0f} ms "
                f"({len(under)} operations)",
                "baseline": f"no reload: p50 {percentile(base, 50) * 1e3:.0f} ms, "
                f"p99 {percentile(base, 99) * 1e3:.0f} ms",
                "ratio": percentile(under, 99) / percentile(base, 99) if base and under else 0.0,
                "failed_or_stuck": len(bad),
            }
        )
    return rows


def _by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["key"], int(r["backends"])): r for r in rows if "key" in r and "backends" in r}


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 10's targets, each judged from this run's rows: target, measured, holds (None: not measured)."""
    got = _by_key(rows)
    sizes = sorted({n for _, n in got})
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str | None, holds: bool | None) -> None:
        out.append({"target": target, "measured": measured or "not measured in this run", "holds": holds})

    for n, factor in ((2, 10), (50, 30)):
        row = got.get(("start", n))
        add(
            f"the new worker's start >= {factor}x faster than `systemctl restart` at {n} backends",
            row and f"{row['value']} vs {row['baseline']}: {row['speedup']:.0f}x",
            row and row["speedup"] >= factor,
        )
    cpu = [got[("unchanged_cpu", n)] for n in sizes if ("unchanged_cpu", n) in got]
    # Zero work, at clock-tick resolution (10 ms): no more CPU during the
    # reloads than idle for as long, give or take one tick per worker.
    add(
        "unchanged backends do zero work (CPU during the reloads = idle CPU, +- one 10 ms tick per worker)",
        ", ".join(f"{r['value']} vs {r['baseline'].split(' (')[0]} idle ({r['backends'] - 1} workers)" for r in cpu),
        bool(cpu) and all(r["extra_ms"] <= 10.0 * max(1, r["backends"] - 1) for r in cpu),
    )
    for key, bound, what in (
        ("pause", 300, "the RPC pause <= the new worker's start + 300 ms"),
        ("ready_beyond_start", 100, "SIGHUP -> READY=1 <= the new worker's start + 100 ms"),
    ):
        found = [got[(key, n)] for n in sizes if (key, n) in got]
        add(
            what + " (each reload against its own start)",
            ", ".join(f"+{r['over_start_ms']:.0f} ms ({r['backends']})" for r in found),
            bool(found) and all(r["over_start_ms"] <= bound for r in found),
        )
    small, large = got.get(("sighup", 2)), got.get(("sighup", 50))
    if small and large:
        a, b = statistics.median(small["raw"]["sighup_s"]), statistics.median(large["raw"]["sighup_s"])
        add(
            "SIGHUP -> READY=1 at 50 backends within 20 % of 2",
            f"{b * 1e3:.0f} vs {a * 1e3:.0f} ms: {b / a - 1:+.0%}",
            b <= 1.2 * a,
        )
    else:
        add("SIGHUP -> READY=1 at 50 backends within 20 % of 2", None, None)
    found = [got[("systemctl_overhead", n)] for n in sizes if ("systemctl_overhead", n) in got]
    add(
        "`systemctl reload` (systemd 252, ExecReload=) adds <= 50 ms over the cycle",
        ", ".join(f"+{r['overhead_ms']:.0f} ms ({r['backends']})" for r in found),
        bool(found) and all(r["overhead_ms"] <= 50 for r in found),
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, 2 and 10 backends")
    parser.add_argument("--backends", help="comma-separated backend counts (default 2,10,50)")
    parser.add_argument("--only", action="append", choices=["volume", "notify-reload", "waits"])
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/stack.json")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    sizes = [int(x) for x in (args.backends or ("2,10" if args.quick else "2,10,50")).split(",")]
    sections: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "volume": lambda: bench_volume(sizes, args.quick),
        "notify-reload": lambda: bench_notify_reload(args.quick),
        "waits": lambda: bench_waits(args.quick),
    }
    rows: list[dict[str, Any]] = []
    for name in args.only or list(sections):
        log(f"running {name}...")
        rows.extend(dict(r, section=f"stack-{name}") for r in sections[name]())
    if args.only and args.json.exists():
        # A partial run replaces its own sections' rows and keeps the others.
        previous = json.loads(args.json.read_text())
        ran = {f"stack-{name}" for name in args.only}
        rows = [r for r in previous.get("rows", []) if r.get("section") not in ran] + rows
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "quick": args.quick,
        "suite": "benchmarks/bench_stack.py",
        "rows": rows,
        "targets": targets(rows),
    }
    table = markdown(report)
    verdict = {True: "yes", False: "NO", None: "not measured"}
    table += "\n| target | measured | holds |\n| --- | --- | --- |\n" + "".join(
        f"| {t['target']} | {t['measured']} | {verdict[t['holds']]} |\n" for t in report["targets"]
    )
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
