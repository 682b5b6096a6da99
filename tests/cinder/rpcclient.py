"""Create volumes through cinder's own RPC API, as cinder-scheduler would.

Run with the cinder venv's interpreter and the service's own cinder.conf
(same database, same transport)::

    python rpcclient.py CONF create BACKEND_HOST[,BACKEND_HOST...] COUNT [--wait S] [--interval S]
    python rpcclient.py CONF show ID...
    python rpcclient.py CONF capabilities BACKEND_HOST


``create`` makes COUNT volume rows (1 GiB, status ``creating``) for each
backend host ``host@backend#pool`` named and casts ``create_volume`` to that
backend's queue, one after the other (``--interval`` seconds apart, to
spread them over a reload); with ``--wait`` it then
waits up to S seconds for each to leave ``creating``.  It prints one JSON
object per volume: ``{"id", "status", "sent_at"}`` (CLOCK_MONOTONIC).
``show`` prints the status of existing volumes.  ``capabilities`` asks the
backend's worker for its driver's capabilities (the ``get_capabilities`` call
cinder-api's capabilities request makes, with ``discover``: the driver reads
its stats again), which name the ``volume_backend_name`` it runs with.  Nothing here is a mock:
the casts go through oslo.messaging to the running cinder-volume.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    conf_file, command, *rest = argv
    from cinder import context, objects, rpc
    from cinder.common import config  # noqa: F401  (registers cinder's options)
    from oslo_config import cfg

    objects.register_all()
    cfg.CONF(["--config-file", conf_file], project="cinder")
    rpc.init(cfg.CONF)
    ctxt = context.get_admin_context()
    if command == "show":
        for ident in rest:
            volume = objects.Volume.get_by_id(ctxt, ident)
            print(json.dumps({"id": ident, "status": volume.status, "host": volume.host}))
        return 0
    from cinder.volume import rpcapi as volume_rpcapi

    if command == "capabilities":
        print(json.dumps(volume_rpcapi.VolumeAPI().get_capabilities(ctxt, rest[0], True), default=str))
        return 0

    hosts, count = rest[0].split(","), int(rest[1])
    options = dict(zip(rest[2::2], rest[3::2], strict=False))
    wait = float(options.get("--wait", 0.0))
    interval = float(options.get("--interval", 0.0))
    api = volume_rpcapi.VolumeAPI()
    sent = []
    for n, host in ((n, host) for n in range(count) for host in hosts):
        volume = objects.Volume(
            context=ctxt,
            size=1,
            host=host,
            availability_zone="nova",
            status="creating",
            attach_status="detached",
            user_id="test",
            project_id="test",
            display_name=f"rpc-{n}",
        )
        volume.create()
        api.create_volume(ctxt, volume, None, None, allow_reschedule=False)
        sent.append((volume.id, time.monotonic()))
        if interval:
            time.sleep(interval)
    deadline = time.monotonic() + wait
    for ident, sent_at in sent:
        status = "creating"
        while True:
            status = objects.Volume.get_by_id(ctxt, ident).status
            if status != "creating" or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        print(json.dumps({"id": ident, "status": status, "sent_at": sent_at}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
