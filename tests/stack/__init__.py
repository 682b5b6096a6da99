"""A full Cinder stack on loopback for the load tests and benchmarks (issue 7).

MariaDB and RabbitMQ (the machine's own, or ones started here), cinder-api,
cinder-scheduler and cinder-volume from the cached cinder virtualenv, a slow
test volume driver and a load generator speaking the real REST API.
"""
