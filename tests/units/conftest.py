"""The real-manager harness's fixtures (tests/harness): the Debian 13 root for
systemd 257's verify, and systemd 252/257 user managers for the rendered units."""

from harness.fixtures import harness_workdir, systemd252, systemd257, sysv_root

__all__ = ["harness_workdir", "systemd252", "systemd257", "sysv_root"]
