"""check --running's comparison (preview.py) on a real ConfigOpts and real files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oslo_config import cfg
from refdaemon import register_opts

from cinder_reload.preview import describe, preview, running_document, running_files

GOOD = """\
[DEFAULT]
greeting = hello
debug = false
[backend1]
label = one
password = pw-one
[backend2]
label = two
"""


def loaded(tmp_path: Path, text: str = GOOD, **service: Any) -> tuple[dict, Path]:
    """The running document of a service on ``text``; ``service``: how that service applies its options."""
    path = tmp_path / "svc.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(path)], default_config_files=[], default_config_dirs=[])
    how = {
        "reinit_groups": {"backend1", "backend2"},
        "worker_groups": {"backend2"},
        "restart_only": {("DEFAULT", "greeting")},
    }
    doc = running_document(conf, service="svc", pid=7, salt="s", **(how | service))
    return json.loads(json.dumps(doc)), path  # as check reads it back


def test_the_recorded_document_holds_no_secret_and_says_how_each_option_changes(tmp_path: Path) -> None:
    doc, path = loaded(tmp_path)
    assert "pw-one" not in json.dumps(doc)
    assert doc["sections"]["backend1"]["password"]["digest"].startswith("sha256:")
    assert doc["sections"]["backend1"]["label"] == ["one"]
    assert doc["how"]["DEFAULT"]["debug"] == "live"
    assert doc["how"]["DEFAULT"]["greeting"] == "restart"
    assert doc["how"]["DEFAULT"]["op_seconds"] == "live"
    assert doc["how"]["backend1"]["label"] == "reinit"
    assert "backend1.password" in doc["secret"]
    assert (doc["pid"], doc["files"], doc["workers"]) == (7, [str(path)], ["backend2"])
    assert running_files(doc) == [str(path)]
    assert preview(doc, [GOOD]) == []


def test_each_change_and_how_it_would_take_effect(tmp_path: Path) -> None:
    doc, _ = loaded(tmp_path)
    now = (
        GOOD.replace("debug = false", "debug = true")
        .replace("greeting = hello", "greeting = hi")
        .replace("label = one", "label = uno")
        .replace("password = pw-one", "password = pw-new")
        .replace("label = two", "label = deux\nlable = typo")
    )
    lines = describe(preview(doc, [now]))
    assert lines == [
        "[DEFAULT] debug: 'false' -> 'true': applied live",
        "[DEFAULT] greeting: 'hello' -> 'hi': needs a restart (reported pending, not applied)",
        "[backend1] label: 'one' -> 'uno': [backend1] re-initialised",
        "[backend1] password: **** -> ****: [backend1] re-initialised",
        "[backend2] label: 'two' -> 'deux': worker backend2 replaced",
        "[backend2] lable: (not set) -> 'typo': worker backend2 replaced",
    ]
    assert "pw-new" not in repr(preview(doc, [now]))


def test_removed_keys_later_files_and_unknown_sections(tmp_path: Path) -> None:
    doc, _ = loaded(tmp_path)
    first = GOOD.replace("label = two\n", "")
    second = "[backend1]\nlabel = from-conf-d\n[extra]\ncolour = v\n"
    lines = describe(preview(doc, [first, second]))
    assert lines == [
        "[backend1] label: 'one' -> 'from-conf-d': [backend1] re-initialised",
        "[backend2] label: 'two' -> (not set): worker backend2 replaced",
        "[extra] colour: (not set) -> 'v': no option reads it: ignored",
    ]
    # The same secret written again is no change, whatever the salt was.
    assert preview(doc, [GOOD.replace("password = pw-one", "password = 'pw-one'")]) == []


def test_options_the_workers_carry_out_by_being_replaced(tmp_path: Path) -> None:
    """cinder-api's (and cinder-backup's) options outside any worker section: the workers replaced."""
    doc, _ = loaded(tmp_path, reinit_groups=(), worker_groups=(), restart_only=(), owned={("DEFAULT", "greeting")})
    assert doc["how"]["DEFAULT"]["greeting"] == "reinit" and doc["owned"] == ["DEFAULT.greeting"]
    lines = describe(preview(doc, [GOOD.replace("greeting = hello", "greeting = hi")]))
    assert lines == ["[DEFAULT] greeting: 'hello' -> 'hi': the workers replaced"]
