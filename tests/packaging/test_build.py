"""tools/build-packages: both builds succeed, the linters are clean, the rpm
scriptlets hold expanded macros, and the packages carry exactly the units,
drop-ins and init scripts committed in units/ and initscripts/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from harness.packages import REPO, SERVICES, BuiltPackages

pytestmark = pytest.mark.packaging

DEBS = ("python3-cinder-reload", "cinder-reload-services", "cinder-reload-dropins")


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout


def _extract(deb: Path, into: Path) -> Path:
    into.mkdir()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True, timeout=60)
    return into


def _files(root: Path) -> set[str]:
    return {"/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_build_succeeds_with_every_package(built_packages: BuiltPackages) -> None:
    built_packages.check()
    assert sorted(built_packages.debs) == sorted(DEBS)
    assert sorted(built_packages.rpms) == sorted(DEBS)


def test_lintian_reports_no_error_and_no_warning(built_packages: BuiltPackages) -> None:
    report = (built_packages.check().out / "deb" / "lintian.txt").read_text()
    bad = [line for line in report.splitlines() if re.match(r"[EW]: ", line)]
    assert bad == [], report
    # Every tag shown at all (info, pedantic, experimental) is triaged in the docs.
    triaged = (REPO / "doc" / "source" / "admin" / "packaging.rst").read_text()
    tags = {m.group(1) for m in re.finditer(r"^[IPX]: \S+: (\S+)", report, re.M)}
    assert {t for t in tags if f"`{t}`" not in triaged} == set()


def test_rpmlint_reports_no_error(built_packages: BuiltPackages) -> None:
    report = (built_packages.check().out / "rpm" / "rpmlint.txt").read_text()
    assert re.search(r"\b0 errors\b", report), report
    assert not re.search(r"^\S+: E: ", report, re.M), report


def test_rpm_scriptlets_hold_expanded_macros(built_packages: BuiltPackages) -> None:
    rpms = built_packages.check().rpms
    scripts = _out(["rpm", "-qp", "--scripts", str(rpms["cinder-reload-services"])])
    units = " ".join(f"{s}.service" for s in SERVICES)
    # %systemd_post / %systemd_preun / %systemd_postun_with_reload, expanded.
    assert f"systemctl --no-reload preset {units}" in scripts, scripts
    assert f"systemctl --no-reload disable --now {units}" in scripts, scripts
    assert f"systemctl try-reload-or-restart {units}" in scripts, scripts
    for rpm in rpms.values():
        text = _out(["rpm", "-qp", "--scripts", str(rpm)])
        assert not re.search(r"%\{|%systemd|%\w+_", text), f"{rpm.name}: literal macro text:\n{text}"


def test_rpm_units_are_in_the_unit_dir(built_packages: BuiltPackages) -> None:
    rpms = built_packages.check().rpms
    files = set(_out(["rpm", "-qlp", str(rpms["cinder-reload-services"])]).split())
    want = {f"/usr/lib/systemd/system/{p.name}" for p in (REPO / "units").iterdir() if p.is_file()}
    assert files == want
    dropins = set(_out(["rpm", "-qlp", str(rpms["cinder-reload-dropins"])]).split())
    rdo = REPO / "units" / "dropins" / "rdo"
    assert {f"/usr/lib/systemd/system/{p.relative_to(rdo)}" for p in rdo.rglob("reload.conf")} <= dropins


def test_debs_carry_exactly_the_committed_service_files(built_packages: BuiltPackages, tmp_path: Path) -> None:
    debs = built_packages.check().debs
    services = _extract(debs["cinder-reload-services"], tmp_path / "services")
    expected: dict[str, Path] = {}
    for unit in (REPO / "units").iterdir():
        if unit.is_file():
            expected[f"/lib/systemd/system/{unit.name}"] = unit
    for script in (REPO / "initscripts").iterdir():
        if script.is_file():
            expected[f"/etc/init.d/{script.name}"] = script
    for default in (REPO / "initscripts" / "default").iterdir():
        expected[f"/etc/default/{default.name}"] = default
    shipped = {f for f in _files(services) if not f.startswith("/usr/share/doc/")}
    assert shipped == set(expected)
    for path, source in expected.items():
        assert (services / path.lstrip("/")).read_bytes() == source.read_bytes(), path
    for name in SERVICES:
        assert (services / "etc/init.d" / name).stat().st_mode & 0o777 == 0o755

    dropins = _extract(debs["cinder-reload-dropins"], tmp_path / "dropins")
    debian = REPO / "units" / "dropins" / "debian"
    want = {f"/lib/systemd/system/{p.relative_to(debian)}": p for p in debian.rglob("*") if p.is_file()}
    assert {f for f in _files(dropins) if not f.startswith("/usr/share/doc/")} == set(want)
    for path, source in want.items():
        assert (dropins / path.lstrip("/")).read_bytes() == source.read_bytes(), path


def test_deb_relationships(built_packages: BuiltPackages) -> None:
    debs = built_packages.check().debs

    def field(pkg: str, name: str) -> str:
        return _out(["dpkg-deb", "-f", str(debs[pkg]), name]).strip()

    # The module's dependencies, as dh_python3 found them in the wheel's metadata.
    depends = field("python3-cinder-reload", "Depends")
    for dep in ("python3-oslo.config", "python3-jinja2", "python3-sdnotify"):
        assert dep in depends
    # Full units and Debian's own cinder-* packages ship the same paths.
    conflicts = {c.strip() for c in field("cinder-reload-services", "Conflicts").split(",")}
    assert set(SERVICES) | {"cinder-reload-dropins"} <= conflicts
    assert "python3-cinder-reload (= 0.1.0)" in field("cinder-reload-dropins", "Depends")


def test_maintainer_scripts_and_build_script_are_clean_posix_sh() -> None:
    scripts = sorted(
        p for p in (REPO / "debian").iterdir() if p.suffix in (".postinst", ".postrm", ".prerm", ".preinst")
    )
    assert scripts
    for tool in (["shellcheck", "--shell=sh"], ["checkbashisms", "--posix"]):
        proc = subprocess.run(
            [*tool, *map(str, scripts), str(REPO / "tools" / "build-packages")],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
