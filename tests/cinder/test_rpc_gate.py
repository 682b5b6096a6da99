"""RpcGate: a backend manager's RPC-callable methods behind its drain gate.

Real threads and a real DrainGate; the "manager" is a small class shaped like
cinder's (public RPC methods that call each other, lifecycle hooks,
properties), so this runs without cinder.  The real-cinder proof is in
test_volume_process.py and tests/stack (RPCs under load across reloads).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from cinder_reload.cinder.rpcgate import RpcGate
from cinder_reload.drain import DrainGate, DrainTimeout


class Manager:
    RPC_API_VERSION = "3.0"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()

    @property
    def service_topic_queue(self) -> str:
        return "host@fake1"

    def init_host(self, **kwargs: Any) -> None:
        self.calls.append("init_host")

    def create_volume(self, context: Any, volume: str) -> str:
        self.release.wait(10)
        self.calls.append(f"create {volume}")
        return volume

    def delete_volume(self, context: Any, volume: str) -> None:
        self.calls.append(f"delete {volume}")

    def publish_service_capabilities(self, context: Any) -> None:
        self.update_service_capabilities({})  # a gated method calling another one

    def update_service_capabilities(self, capabilities: dict[str, Any]) -> None:
        self.calls.append("capabilities")

    def _private(self) -> None:
        pass


def test_only_rpc_methods_are_wrapped_on_the_instance() -> None:
    manager = Manager()
    names = RpcGate(DrainGate("fake1")).wrap(manager)
    assert sorted(names) == [
        "create_volume",
        "delete_volume",
        "publish_service_capabilities",
        "update_service_capabilities",
    ]
    assert "create_volume" in vars(manager) and "create_volume" not in vars(Manager())
    assert Manager.create_volume is not manager.create_volume


def test_in_flight_calls_finish_new_ones_wait_and_nested_calls_never_deadlock() -> None:
    manager = Manager()
    gate = DrainGate("fake1")
    rpc = RpcGate(gate)
    rpc.wrap(manager)
    in_flight = threading.Thread(target=manager.create_volume, args=(None, "v1"))
    in_flight.start()
    deadline = time.monotonic() + 5
    while gate.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.in_flight == 1
    gate.close()
    # A drain with the call still in flight times out...
    try:
        gate.wait_drained(time.monotonic() + 0.1)
    except DrainTimeout:
        pass
    else:
        raise AssertionError("drained with a call in flight")
    # ...a new call waits at the closed gate...
    waiting = threading.Thread(target=manager.delete_volume, args=(None, "v2"))
    waiting.start()
    time.sleep(0.1)
    assert "delete v2" not in manager.calls
    # ...the in-flight one finishes, the drain completes.
    manager.release.set()
    gate.wait_drained(time.monotonic() + 5)
    assert manager.calls == ["create v1"]
    # The re-initialiser, gate closed, calls gated methods through bypass().
    with rpc.bypass():
        manager.publish_service_capabilities(None)
    assert manager.calls == ["create v1", "capabilities"]
    gate.open()
    waiting.join(5)
    assert manager.calls[-1] == "delete v2" and gate.in_flight == 0
    # A gated method calling another one is one operation (no self-deadlock).
    manager.publish_service_capabilities(None)
    assert gate.in_flight == 0 and manager.calls[-1] == "capabilities"
