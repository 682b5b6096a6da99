"""doc/reload-cycle.md's table of how each option is applied is the code's (cinder_reload/cinder/applied.py)."""

from __future__ import annotations

from pathlib import Path

from cinder_reload.cinder.applied import markdown, rows
from cinder_reload.cinder.options import _COMMON_RESTART_ONLY, _PER_SERVICE_RESTART_ONLY

DOC = Path(__file__).resolve().parents[2] / "doc" / "reload-cycle.md"


def test_the_committed_table_is_what_the_code_says() -> None:
    text = DOC.read_text()
    start = text.index("<!-- applied-table: start")
    table = text[text.index("\n", start) + 1 : text.index("<!-- applied-table: end -->")]
    assert table == markdown(), "doc/reload-cycle.md is stale: run tools/option-table"


def test_every_restart_only_option_has_its_row() -> None:
    shown = " ".join(options for _, options, _, _ in rows())
    keys = set(_COMMON_RESTART_ONLY) | {key for keys in _PER_SERVICE_RESTART_ONLY.values() for key in keys}
    missing = {key for key in keys if f"`[{key[0]}] {key[1]}`" not in shown}
    assert not missing, missing
