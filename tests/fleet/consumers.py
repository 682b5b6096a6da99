"""Sample how many consumers a RabbitMQ queue has, from outside the services.

    python consumers.py HOST:PORT QUEUE INTERVAL

Run with the cinder venv's interpreter (py-amqp, what oslo.messaging itself
uses).  Every INTERVAL seconds a passive ``queue.declare`` asks the broker
for the queue's consumer count; each answer is one line ``MONOTONIC COUNT``
on stdout (-1: the queue does not exist).  Ends on SIGTERM or SIGINT.  The
broker's own count is the truth here: which processes think they consume
does not matter, only whether the broker would deliver to one.
"""

from __future__ import annotations

import signal
import sys
import time

import amqp  # type: ignore[import-not-found]


def main() -> int:
    address, queue, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    conn = amqp.Connection(host=address, userid="guest", password="guest", virtual_host="/", connect_timeout=10)
    conn.connect()
    channel = conn.channel()
    while not stop:
        try:
            _, _, consumers = channel.queue_declare(queue=queue, passive=True)
        except amqp.exceptions.NotFound:
            consumers = -1
            channel = conn.channel()  # a failed passive declare closes the channel
        print(f"{time.monotonic():.4f} {consumers}", flush=True)
        time.sleep(interval)  # the sampling period, not a wait for anything
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
