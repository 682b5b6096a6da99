"""`cinder-reload check cinder-volume` on real cinder 29: what
oslo-config-validator reports (unknown options), plus what it cannot (a typed
value, a missing backend section), with no traceback and no library warning.

One subprocess per case (each imports cinder: ~4 s), so the table is short;
tests/unit/test_check.py has the full table on the reference options.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cinderproc import CinderService, volume_config

pytestmark = pytest.mark.cinder


def check(venv: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "cinder-reload"), "check", "cinder-volume", "--", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_working_config_has_no_warning(cinder_venv: Path, tmp_path: Path) -> None:
    path = tmp_path / "cinder.conf"
    path.write_text(
        volume_config(
            tmp_path,
            keystone_authtoken="auth_type = password\nauth_url = http://k:5000\nusername = cinder\npassword = pw-ks",
            nova="region_name = RegionOne\nauth_type = password",
            fake1="backend_host = shared\nreserved_percentage = 5",
        )
    )

    result = check(cinder_venv, path)

    assert result.returncode == 0, result.stderr
    assert "configuration OK (" in result.stdout
    assert result.stderr == "", "no warning for a file cinder reads in full, no library chatter"


def test_typos_a_cli_value_and_a_missing_backend_section(cinder_venv: Path, tmp_path: Path) -> None:
    path = tmp_path / "cinder.conf"
    text = volume_config(tmp_path).replace("debug = false", "debug = maybe\ndebgu = true")
    text = text.replace("volume_backend_name = fake1", "volume_backend_nmae = fake1\nvolume_drvier = x")
    text = text.replace("enabled_backends = fake1,fake2", "enabled_backends = fake1,fake2,fake3")
    path.write_text(text)

    result = check(cinder_venv, path)

    assert result.returncode == 1, result.stdout + result.stderr
    for expected in (
        "[DEFAULT] debug: Unexpected boolean value 'maybe'",
        "[fake3]: named by the configuration (enabled_backends) but no file has this section",
        "[DEFAULT] debgu: unknown option, ignored (did you mean debug?)",
        "[fake1] volume_backend_nmae: unknown option, ignored (did you mean volume_backend_name?)",
        "[fake1] volume_drvier: unknown option, ignored (did you mean volume_driver?)",
    ):
        assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "NoSuchOptError" not in result.stderr
    assert "Eventlet is deprecated" not in result.stderr and "usage:" not in result.stderr


def test_check_running_previews_a_reload_of_real_cinder_volume(start_cinder: Callable[..., CinderService]) -> None:
    volume = start_cinder()
    text = volume.config_file.read_text()
    edited = text.replace("volume_backend_name = fake2", "volume_backend_name = fake2-gold")
    edited = edited.replace("debug = false", "debug = true").replace(
        "transport_url = fake://", "transport_url = fake:///x"
    )
    volume.edit(edited)

    preview = volume.check_running()

    assert preview.returncode == 0, preview.stdout + preview.stderr
    lines = preview.stdout.splitlines()
    assert lines[0] == f"cinder-volume (pid {volume.pid}): a reload now would change:"
    assert "  [DEFAULT] debug: 'false' -> 'true': applied live" in lines
    assert "  [fake2] volume_backend_name: 'fake2' -> 'fake2-gold': worker fake2 replaced" in lines
    assert "  [DEFAULT] transport_url: **** -> ****: every worker replaced, one at a time" in lines, lines
    assert len(lines) == 5 and lines[-1].startswith("cinder-volume: configuration OK ("), lines
    fake2 = volume.worker_pid("fake2")
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    assert volume.worker_pid("fake2") != fake2, "the preview said fake2's worker would be replaced"

    # enabled_backends naming a section no file has: refused at once, with the reason.
    volume.edit(edited.replace("enabled_backends = fake1,fake2", "enabled_backends = fake1,fake2,fake3"))
    refused = volume.reload()
    assert refused.returncode == 1
    assert "[fake3]: named by enabled_backends but no file has this section" in refused.stderr, refused.stderr
    assert volume.state()["pending_restart"] == [] or all(
        c["option"] != "enabled_backends" for c in volume.state()["pending_restart"]
    )
    volume.edit(edited.replace("volume_backend_name = fake1", "volume_backend_name = fake1-gold"))
    assert volume.reload().returncode == 0


def test_a_bad_value_of_a_driver_option_is_an_error(cinder_venv: Path, tmp_path: Path) -> None:
    """The driver's own options are typed in its backend section, as the reload types them
    (issue 13: the rolling reload checks every host first and must not pass what the reload refuses)."""
    path = tmp_path / "cinder.conf"
    text = volume_config(tmp_path, DEFAULT="enabled_backends = rbd")
    text = text.replace("enabled_backends = fake1,fake2\n", "")
    path.write_text(
        text
        + "[rbd]\nvolume_driver = cinder.volume.drivers.rbd.RBDDriver\nvolume_backend_name = rbd\n"
        + "rbd_store_chunk_size = sixteen\n"
    )

    result = check(cinder_venv, path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "[rbd] rbd_store_chunk_size: invalid literal for int() with base 10: 'sixteen'" in result.stderr
