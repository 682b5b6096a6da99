"""Values a service sets in code are part of the candidate, not changes."""

from __future__ import annotations

from pathlib import Path

from oslo_config import cfg

from cinder_reload.config import load_candidate, snapshot
from cinder_reload.diff import diff_values


def test_set_default_and_set_override_carry_over_but_not_the_reloads_own(tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_text("[b1]\nlabel = one\n")
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("label", default="x"), cfg.IntOpt("size", default=7)], group="b1")
    conf.register_opt(cfg.IntOpt("down_time", default=60))
    conf(["--config-file", str(path)], project="t", prog="t", default_config_files=[], default_config_dirs=[])
    # cinder gives every backend option a default of None, and overrides
    # service_down_time when report_interval needs it.
    conf.set_default("size", None, group="b1")
    conf.set_override("down_time", 25)
    candidate = load_candidate(conf)
    assert diff_values(snapshot(conf), snapshot(candidate)).changes == ()
    # An override the reload set itself is the files' business.
    conf.set_override("label", "uno", group="b1")
    candidate = load_candidate(conf, not_overridden=[("b1", "label")])
    assert candidate.b1.label == "one"


def test_a_bad_file_value_for_a_cli_option_is_named(tmp_path: Path) -> None:
    # oslo.config gives a CLI option's file value to argparse, which exits.
    import pytest

    from cinder_reload.config import ConfigInvalid

    path = tmp_path / "c.conf"
    path.write_text("[DEFAULT]\ndebug = false\n")
    conf = cfg.ConfigOpts()
    conf.register_cli_opt(cfg.BoolOpt("debug", default=False))
    conf(["--config-file", str(path)], project="t", prog="t", default_config_files=[], default_config_dirs=[])
    path.write_text("[DEFAULT]\ndebug = perhaps\n")
    with pytest.raises(ConfigInvalid) as caught:
        load_candidate(conf)
    assert [str(p) for p in caught.value.problems] == ["[DEFAULT] debug: Unexpected boolean value 'perhaps'"]
