"""The real-manager harness's fixtures (tests/harness), for the systemd 257 verify."""

from harness.fixtures import harness_workdir, sysv_root

__all__ = ["harness_workdir", "sysv_root"]
