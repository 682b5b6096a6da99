"""The ``[reload]`` options where OpenStack's own tools look for a project's options.

``oslo-config-generator`` and ``oslo-config-validator`` are run for real,
through the ``oslo.config.opts`` entry point the installed project declares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cinder_reload.cinder.options import RELOAD_OPTS

BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_generator_writes_the_reload_section_with_every_option() -> None:
    done = run("oslo-config-generator", "--namespace", "cinder_reload")
    assert done.returncode == 0, done.stderr
    section = done.stdout.split("[reload]", 1)[1]
    for opt in RELOAD_OPTS:
        assert f"#{opt.name} = {opt.default}" in section, opt.name
        assert opt.help.split()[0] in section


def test_the_validator_knows_the_options_and_refuses_unknown_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text("[reload]\n" + "".join(f"{opt.name} = {opt.default}\n" for opt in RELOAD_OPTS))
    done = run("oslo-config-validator", "--namespace", "cinder_reload", "--input-file", str(good))
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("[reload]\ndrain_timeot = 5\n")
    done = run("oslo-config-validator", "--namespace", "cinder_reload", "--input-file", str(bad))
    assert done.returncode == 1 and "reload/drain_timeot" in done.stderr
