"""cinder-api 29: a reload replaces the API workers under a steady load, without losing a request.

What a user sees from outside: every request answered (nothing refused,
reset or 5xx) while the reload runs, the main PID kept, every worker PID
new, and the changed option (``osapi_max_limit``: how many volume types a
list returns; a policy file named in ``[oslo_policy]``: 200 becomes 403) in
effect in every worker, found by which process holds the server end of each
connection.  A paste file that does not load fails the reload, and the old
workers keep answering.  A request in flight holds the reload until its old
worker answered it; an idle keep-alive connection does not hold it.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apiload import HEADERS, get, reload_under_load, server_pid
from cinderproc import CinderService, api_config, children_of
from cinderunit import Unit

pytestmark = [pytest.mark.cinder, pytest.mark.process]

Start = Callable[..., CinderService]
TYPES = "/v3/types"  # auth_strategy = noauth: no project in the path


def _port(api: CinderService) -> int:
    found = re.search(r"osapi_volume_listen_port = (\d+)", api.config_file.read_text())
    assert found is not None
    return int(found.group(1))


def _create_types(port: int, count: int) -> None:
    for number in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"volume_type": {"name": f"type{number}"}})
        conn.request("POST", TYPES, body=body, headers={**HEADERS, "Content-Type": "application/json"})
        reply = conn.getresponse()
        reply.read()
        conn.close()
        assert reply.status == 200, reply.status


def _wait(probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return found


def _by_worker(port: int, workers: set[int], path: str, timeout: float = 30.0) -> dict[int, set[Any]]:
    """What each worker answers to ``GET path`` (the status, and for a list the number of items):
    new connections until every worker answered."""
    seen: dict[int, set[Any]] = {}
    deadline = time.monotonic() + timeout
    while set(seen) != workers and time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            status, data, _ = get(port, path, conn)
            pid = server_pid(conn, port, workers)
        finally:
            conn.close()
        if pid is not None:
            items = len(data["volume_types"]) if status == 200 and "volume_types" in data else None
            seen.setdefault(pid, set()).add((status, items) if items is not None else status)
    return seen


def _items_by_worker(port: int, workers: set[int]) -> dict[int, set[int]]:
    """How many volume types each worker's list returns."""
    found = _by_worker(port, workers, TYPES)
    assert all(isinstance(a, tuple) and a[0] == 200 for answers in found.values() for a in answers), found
    return {pid: {a[1] for a in answers} for pid, answers in found.items()}


def test_a_reload_replaces_the_api_workers_under_load(start_cinder: Start, cinder_venv: Path) -> None:
    api = start_cinder("cinder-api", lambda workdir: api_config(workdir, cinder_venv))
    port = _port(api)
    main = api.pid
    old = children_of(main)
    assert len(old) == 2  # osapi_volume_workers = 2
    _create_types(port, 4)  # with cinder's __DEFAULT__: 5 types
    assert _items_by_worker(port, old) == {pid: {5} for pid in old}

    good = api.config_file.read_text()
    paste = api.workdir / "api-paste.ini"
    good_paste = paste.read_text()

    # A paste file that does not load: the new workers never come up, the
    # old ones keep answering, and the reload says why.
    paste.write_text(good_paste.replace("[composite:osapi_volume]", "[composite:something_else]"))
    run = reload_under_load(port, TYPES, api.reload)
    done, load = run.result, run.load
    assert done.returncode == 1, done.stdout + done.stderr
    assert "osapi_volume" in done.stderr, done.stderr
    assert load.failures == [], load.failures[:10]
    assert children_of(main) == old and api.pid == main
    assert {a.items for a in load.answers} == {5}
    paste.write_text(good_paste)

    # osapi_max_limit = 2 (a list returns 2 of the 5 types), debug live,
    # osapi_volume_workers pending restart: new workers under the load.
    # Then once more (3 types): each reload is a chance for a lost request.
    edited = good.replace("osapi_volume_workers = 2", "osapi_volume_workers = 3")
    for limit, config in (
        (2, edited.replace("debug = false", "debug = true\nosapi_max_limit = 2")),
        (3, edited.replace("debug = false", "debug = true\nosapi_max_limit = 3")),
    ):
        api.edit(config)
        if limit == 2:
            # What `check --running` says a reload would do, before it does.
            preview = api.check_running()
            assert preview.returncode == 0, preview.stdout + preview.stderr
            assert "  [DEFAULT] osapi_max_limit: (not set) -> '2': the workers replaced" in preview.stdout
            assert "  [DEFAULT] osapi_volume_workers: '2' -> '3': needs a restart" in preview.stdout
        old = _reload_under_load(api, port, old, limit)

    # A policy file named in [oslo_policy]: every new worker enforces it
    # (reading one volume type: 200 before, 403 after; the list still 200).
    status, data, _ = get(port, TYPES)
    one = f"{TYPES}/{data['volume_types'][0]['id']}"
    assert _by_worker(port, old, one) == {pid: {200} for pid in old}
    policy = api.workdir / "policy.yaml"
    policy.write_text('"volume_extension:type_get": "!"\n')
    # The notification transport is the main process's (cinder's main() set it
    # up before forking): pending restart, the reload still ok.
    text = api.config_file.read_text().replace("driver = log\n", "driver = log\ntopics = elsewhere\n")
    api.edit(text + f"\n[oslo_policy]\npolicy_file = {policy}\n")
    done = api.reload()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "oslo_messaging_notifications.topics" in done.stdout, done.stdout
    new = children_of(main)
    assert len(new) == 2 and not new & old
    assert _by_worker(port, new, one) == {pid: {403} for pid in new}
    assert _items_by_worker(port, new) == {pid: {3} for pid in new}

    # An idle keep-alive connection does not hold the reload (its old worker
    # closes it after a short grace, well before cinder's 15 s exit grace),
    # and its client sees it closed, not reset mid-request.
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    assert get(port, TYPES, idle)[0] == 200
    started = time.monotonic()
    done = api.reload()
    assert done.returncode == 0 and time.monotonic() - started < 12, (done, time.monotonic() - started)
    assert idle.sock is not None and idle.sock.recv(1) == b""
    idle.close()
    new = children_of(main)

    # A request still in flight (its body half sent) holds the reload until
    # its old worker answered it; the new workers are up meanwhile.
    old = new
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"volume_type": {"name": "slow"}}).encode()
    conn.putrequest("POST", TYPES)
    for name, value in {**HEADERS, "Content-Type": "application/json", "Content-Length": str(len(body))}.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body[:10])
    holder = _wait(lambda: server_pid(conn, port, old), "a worker to accept the slow request")
    reloaded: list[Any] = []
    thread = threading.Thread(target=lambda: reloaded.append(api.reload()))
    thread.start()
    _wait(lambda: len(children_of(main)) == 4 or None, "the new workers next to the old ones")
    assert thread.is_alive(), "the reload ended with a request in flight"
    conn.send(body[10:])
    reply = conn.getresponse()
    reply.read()
    conn.close()
    assert reply.status == 200, reply.status
    thread.join(60)
    assert reloaded and reloaded[0].returncode == 0, reloaded
    assert holder not in children_of(main) and len(children_of(main)) == 2


def _reload_under_load(api: CinderService, port: int, old: set[int], limit: int) -> set[int]:
    """A reload while clients send requests: every one answered, the workers new, ``limit`` types listed."""
    main = api.pid
    run = reload_under_load(port, TYPES, api.reload, before=30, after=30)
    done, load, started, ended = run.result, run.load, run.started, run.ended
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pending restart: DEFAULT.osapi_volume_workers" in done.stdout, done.stdout
    # Every request answered, none refused, reset or 5xx.
    assert load.failures == [], load.failures[:10]
    assert all(a.status == 200 for a in load.answers)
    assert [a for a in load.answers if started <= a.at <= ended], "no request was answered while the reload ran"
    # Keep-alive clients were told to reconnect ("Connection: close") and did.
    assert any(a.closed and a.keep_alive for a in load.answers)
    assert {a.items for a in load.answers if a.at > ended} == {limit}
    # Same main process, every worker new, each listing ``limit`` types.
    new = children_of(main)
    assert len(new) == 2 and not new & old, (old, new)
    assert _items_by_worker(port, new) == {pid: {limit} for pid in new}
    doc = api.state()
    assert sorted(w["old_pid"] for w in doc["workers"]) == sorted(old)
    assert sorted(w["new_pid"] for w in doc["workers"]) == sorted(new)
    assert "osapi_max_limit" in {c["option"] for c in doc["changed"]}
    return new


@pytest.mark.systemd
def test_systemctl_reload_replaces_the_api_workers_under_load(cinder_unit: Any, cinder_venv: Path) -> None:
    """The same through the rendered unit under a real systemd 252 manager: ``systemctl reload``."""
    api: Unit = cinder_unit("cinder-api", lambda workdir: api_config(workdir, cinder_venv))
    found = re.search(r"osapi_volume_listen_port = (\d+)", api.config_file.read_text())
    assert found is not None
    port = int(found.group(1))
    main = int(api.show()["MainPID"])
    old = children_of(main)
    assert len(old) == 2
    _create_types(port, 2)  # with cinder's __DEFAULT__: 3 types
    api.edit(api.config_file.read_text().replace("debug = false", "debug = true\nosapi_max_limit = 1"))
    run = reload_under_load(port, TYPES, api.reload)
    done, load = run.result, run.load
    assert done.ok, done
    assert load.failures == [], load.failures[:10]
    props = api.show()
    assert props["ActiveState"] == "active" and int(props["MainPID"]) == main, props
    assert "2/2 workers ok" in props["StatusText"], props["StatusText"]
    new = children_of(main)
    assert len(new) == 2 and not new & old, (old, new)
    assert _items_by_worker(port, new) == {pid: {1} for pid in new}
