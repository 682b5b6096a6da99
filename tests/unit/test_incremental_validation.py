"""A reload reads what can have changed: config.changed_scope and CandidateLoader.

The loader reuses one scratch ConfigOpts from reload to reload and reads the
typed values of the sections whose text changed; these tests pin down when it
must fall back to reading everything, and that what it skips cannot differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg

from cinder_reload.config import CandidateLoader, ConfigInvalid, changed_scope, load_candidate, snapshot
from cinder_reload.diff import diff_values

BASE = (
    "[DEFAULT]\nstate_path = /var/lib/svc\n"
    "[b1]\nlabel = one\nsize = 1\n"
    "[b2]\nlabel = two\nsize = 2\n"
    "[other]\nname = x\n"
)


def make_conf(tmp_path: Path, text: str = BASE, extra: list[cfg.Opt] | None = None) -> tuple[cfg.ConfigOpts, Path]:
    path = tmp_path / "svc.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.StrOpt("state_path"))
    for group in ("b1", "b2"):
        conf.register_opts(
            [cfg.StrOpt("label"), cfg.IntOpt("size"), cfg.StrOpt("volumes_dir", default="$state_path/volumes")],
            group=group,
        )
    conf.register_opts([cfg.StrOpt("name"), *(extra or [])], group="other")
    conf(["--config-file", str(path)], project="svc", default_config_files=[], default_config_dirs=[])
    return conf, path


def scope_after(conf: cfg.ConfigOpts, path: Path, text: str, **kwargs: object) -> object:
    path.write_text(text)
    candidate = load_candidate(conf)
    return changed_scope(conf, candidate, **kwargs)  # type: ignore[arg-type]


def test_an_edit_in_one_section_reads_only_that_section(tmp_path: Path) -> None:
    conf, path = make_conf(tmp_path)
    scope = scope_after(conf, path, BASE.replace("size = 1", "size = 10"))
    assert callable(scope)
    assert scope(("b1", "size")) and scope(("b1", "volumes_dir"))
    assert not scope(("b2", "size")) and not scope(("DEFAULT", "state_path")) and not scope(("other", "name"))


@pytest.mark.parametrize(
    "edit",
    [
        # DEFAULT: `$name` in every section falls back to it.
        ("state_path = /var/lib/svc", "state_path = /srv/svc"),
        # Another section's text refers into the edited one.
        ("name = x", "name = ${b1.label}-x"),
    ],
)
def test_edits_that_reach_other_sections_read_everything(tmp_path: Path, edit: tuple[str, str]) -> None:
    conf, path = make_conf(tmp_path)
    text = BASE.replace(*edit)
    if "${b1" in edit[1]:
        # The reference is in place before the edit to b1 it depends on.
        path.write_text(text)
        conf.reload_config_files()
        text = text.replace("label = one", "label = uno")
    assert scope_after(conf, path, text) is None


def test_a_default_or_a_deprecated_name_reaching_into_the_edited_section_reads_everything(tmp_path: Path) -> None:
    conf, path = make_conf(tmp_path, extra=[cfg.StrOpt("mirror", default="${b1.label}")])
    assert scope_after(conf, path, BASE.replace("label = one", "label = uno")) is None
    conf, path = make_conf(
        tmp_path, extra=[cfg.StrOpt("legacy", deprecated_opts=[cfg.DeprecatedOpt("label", group="b2")])]
    )
    assert scope_after(conf, path, BASE.replace("label = two", "label = deux")) is None


def test_pinned_options_are_always_compared(tmp_path: Path) -> None:
    conf, path = make_conf(tmp_path)
    scope = scope_after(conf, path, BASE.replace("size = 2", "size = 20"), pinned=[("DEFAULT", "state_path")])
    assert callable(scope) and scope(("DEFAULT", "state_path")) and scope(("b2", "size"))
    assert not scope(("b1", "size"))


def test_the_reused_scratch_sees_the_same_as_a_fresh_one(tmp_path: Path) -> None:
    conf, path = make_conf(tmp_path)
    loader = CandidateLoader(conf)
    texts = [
        BASE.replace("size = 1", "size = 10"),
        BASE.replace("state_path = /var/lib/svc", "state_path = /srv"),
        BASE.replace("label = two", "label = deux"),
    ]
    for text in texts:
        path.write_text(text)
        reused = loader.load()
        fresh = load_candidate(conf)
        expected = diff_values(snapshot(conf), snapshot(fresh)).changes
        assert diff_values(snapshot(conf, loader.scope), snapshot(reused, loader.scope)).changes == expected
        assert expected  # each edit is a change


def test_options_registered_after_the_first_reload_are_validated(tmp_path: Path) -> None:
    conf, path = make_conf(tmp_path)
    loader = CandidateLoader(conf)
    path.write_text(BASE.replace("size = 1", "size = 10"))
    loader.load()
    # A driver registers an option later on (cinder's append_config_values).
    conf.register_opt(cfg.IntOpt("iops"), group="b1")
    path.write_text(BASE.replace("size = 1", "size = 10\niops = many"))
    with pytest.raises(ConfigInvalid) as info:
        loader.load()
    assert [str(p) for p in info.value.problems][0].startswith("[b1] iops:")
    # A programmatic default set meanwhile is part of the candidate, not a change.
    conf.set_default("name", "y", group="other")
    path.write_text(BASE.replace("size = 1", "size = 10\niops = 5"))
    candidate = loader.load()
    assert candidate.b1.iops == 5 and candidate.other.name == "x"
    assert {c.name for c in diff_values(snapshot(conf), snapshot(candidate)).changes} == {"size", "iops"}


def test_a_bad_value_in_the_edited_section_is_still_refused(tmp_path: Path) -> None:
    conf, path = make_conf(tmp_path)
    loader = CandidateLoader(conf)
    path.write_text(BASE.replace("size = 1", "size = big"))
    with pytest.raises(ConfigInvalid) as info:
        loader.load()
    assert [str(p) for p in info.value.problems] == ["[b1] size: invalid literal for int() with base 10: 'big'"]
