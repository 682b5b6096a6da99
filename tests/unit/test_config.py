"""Candidate validation against real files and a real ConfigOpts."""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg
from refdaemon import register_opts

from cinder_reload.config import ConfigInvalid, load_candidate, snapshot

GOOD = "[DEFAULT]\ngreeting = hi\n[backend1]\nlabel = one\npassword = pw-one\n[backend2]\nlabel = two\n"


def running(tmp_path: Path, text: str = GOOD) -> tuple[cfg.ConfigOpts, Path]:
    path = tmp_path / "svc.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(path)], project="svc", default_config_files=[], default_config_dirs=[])
    return conf, path


def problems(conf: cfg.ConfigOpts, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        load_candidate(conf, **kwargs)
    return [str(p) for p in info.value.problems]


def test_valid_candidate_leaves_running_config_untouched(tmp_path: Path) -> None:
    conf, path = running(tmp_path)
    path.write_text(GOOD.replace("label = one", "label = uno"))
    candidate = load_candidate(conf)
    assert candidate.backend1.label == "uno"
    assert conf.backend1.label == "one"


def test_every_bad_value_is_listed_at_once(tmp_path: Path) -> None:
    conf, path = running(tmp_path)
    path.write_text(GOOD + "[DEFAULT]\nop_seconds = soon\nreinit_seconds = -1\n[backend1]\nport = 0\n")
    found = problems(conf)
    assert any(p.startswith("[DEFAULT] op_seconds:") for p in found)
    assert any(p.startswith("[DEFAULT] reinit_seconds:") for p in found)
    assert any(p.startswith("[backend1] port:") for p in found)


def test_bad_secret_value_is_not_quoted(tmp_path: Path) -> None:
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.IntOpt("pin", secret=True))
    path = tmp_path / "s.conf"
    path.write_text("[DEFAULT]\npin = 1234\n")
    conf(["--config-file", str(path)], default_config_files=[], default_config_dirs=[])
    path.write_text("[DEFAULT]\npin = 98x7\n")
    found = problems(conf)
    assert found == ["[DEFAULT] pin: invalid value for a secret IntOpt (value hidden)"]


def test_required_section_missing(tmp_path: Path) -> None:
    conf, path = running(tmp_path)
    path.write_text(GOOD.split("[backend2]")[0])
    assert problems(conf, required_sections={"backend2"}) == [
        "[backend2]: section is in use by this service but missing from the new configuration "
        "(removing it needs a restart)"
    ]


def test_required_option_missing(tmp_path: Path) -> None:
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.StrOpt("needed", required=True))
    path = tmp_path / "r.conf"
    path.write_text("[DEFAULT]\nneeded = x\n")
    conf(["--config-file", str(path)], default_config_files=[], default_config_dirs=[])
    path.write_text("[DEFAULT]\nother = y\n")
    assert problems(conf) == ["[DEFAULT] needed: required option has no value"]


def test_config_dir_files_are_checked(tmp_path: Path) -> None:
    conf_dir = tmp_path / "svc.conf.d"
    conf_dir.mkdir()
    (conf_dir / "10-a.conf").write_text("[backend1]\nlabel = from-dir\n")
    main = tmp_path / "svc.conf"
    main.write_text(GOOD)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(main), "--config-dir", str(conf_dir)], default_config_files=[], default_config_dirs=[])
    assert conf.backend1.label == "from-dir"
    (conf_dir / "20-b.conf").write_bytes(b"[backend1]\nlabel = caf\xe9\n")
    assert problems(conf) == [f"{conf_dir / '20-b.conf'}: not valid UTF-8 (invalid continuation byte at byte 22)"]


def test_snapshot_reads_overrides_and_flags(tmp_path: Path) -> None:
    conf, _ = running(tmp_path)
    conf.set_override("label", "pinned", "backend1")
    snap = snapshot(conf)
    assert snap[("backend1", "label")].value == "pinned"
    assert snap[("backend1", "password")].secret is True
    assert snap[("DEFAULT", "op_seconds")].mutable is True


def dir_conf(tmp_path: Path, main: str, dropins: dict[str, str]) -> tuple[cfg.ConfigOpts, Path, Path]:
    main_path = tmp_path / "svc.conf"
    main_path.write_text(main)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    for name, text in dropins.items():
        (conf_d / name).write_text(text)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(
        ["--config-file", str(main_path), "--config-dir", str(conf_d)],
        project="svc",
        default_config_files=[],
        default_config_dirs=[],
    )
    return conf, main_path, conf_d


def test_an_empty_drop_in_reloads_as_it_starts(tmp_path: Path) -> None:
    # cinder starts with this set; a reload must accept it too.
    conf, _main, conf_d = dir_conf(tmp_path, GOOD, {"10-empty.conf": ""})
    (conf_d / "20-label.conf").write_text("[backend1]\nlabel = uno\n")
    assert load_candidate(conf).backend1.label == "uno"


def test_a_comments_only_main_file_with_everything_in_conf_d(tmp_path: Path) -> None:
    conf, _main, conf_d = dir_conf(tmp_path, "# see conf.d\n", {"10-all.conf": GOOD})
    (conf_d / "10-all.conf").write_text(GOOD.replace("label = one", "label = uno"))
    assert load_candidate(conf).backend1.label == "uno"


def test_a_set_of_files_with_nothing_in_it_is_refused(tmp_path: Path) -> None:
    conf, main, conf_d = dir_conf(tmp_path, GOOD, {"10-empty.conf": ""})
    main.write_text("# truncated\n")
    found = problems(conf)
    assert len(found) == 2 and all("file is empty" in p for p in found)
