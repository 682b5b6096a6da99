"""The cinder integration: ``cinder-reload run`` for cinder-volume, -scheduler, -backup and -api.

Importing this package does not import cinder; ``run`` does, in the order
cinder needs (see run.py).
"""
