"""Debian's own cinder packages with this project's .debs on top (tests/debian).

``project_debs``: the .debs of this tree, built once per session by
``tools/build-packages`` exactly as a packager runs it.
``debian_cinder``: one ``DebianCinder`` per suite (sid, trixie) and module,
with a test ``/etc/cinder/cinder.conf`` (sqlite, ``fake://`` transport, two
of cinder's own ``FakeLoggingVolumeDriver`` backends) and its database made
by Debian's ``cinder-manage db sync``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from debcinder import DebianCinder
from harness.fixtures import namespaces_unavailable
from harness.packages import build_packages

REPO = Path(__file__).resolve().parents[2]
SUITES = ("sid", "trixie")


@pytest.fixture(scope="session")
def project_debs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("debs")
    out.chmod(0o755)
    return build_packages(out).check().out / "deb"


@pytest.fixture(scope="module", params=SUITES)
def debian_cinder(request: pytest.FixtureRequest, project_debs: Path) -> Iterator[DebianCinder]:
    workdir = Path(tempfile.mkdtemp(prefix="cr-deb-"))
    workdir.chmod(0o755)
    debian = DebianCinder(request.param, workdir, project_debs)
    try:
        debian.prepare_volume_service()
        yield debian
    finally:
        debian.close()
        for log in sorted(workdir.glob("*.log")):  # shown by pytest when a test failed
            print(f"----- {log.name} -----\n{log.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(workdir, ignore_errors=True)
