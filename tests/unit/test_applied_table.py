"""The devref's table of how each option is applied is the code's (cinder_reload/cinder/applied.py).

The documentation renders it at build time (doc/source/_ext/applied_options.py,
CI builds with warnings as errors); these tests hold what it must show.
"""

from __future__ import annotations

import docutils.core
import docutils.utils

from cinder_reload.cinder.applied import rows, rst
from cinder_reload.cinder.options import _COMMON_RESTART_ONLY, _PER_SERVICE_RESTART_ONLY


def test_the_table_renders_one_line_per_row_without_a_warning() -> None:
    warning = docutils.utils.Reporter.WARNING_LEVEL
    tree = docutils.core.publish_doctree(rst(), settings_overrides={"report_level": warning, "halt_level": warning})
    body_rows = list(tree.findall(lambda n: n.tagname == "row"))
    assert len(body_rows) == len(rows()) + 1  # the header


def test_every_restart_only_option_has_its_row() -> None:
    shown = " ".join(options for _, options, _, _ in rows())
    keys = set(_COMMON_RESTART_ONLY) | {key for keys in _PER_SERVICE_RESTART_ONLY.values() for key in keys}
    missing = {key for key in keys if f"`[{key[0]}] {key[1]}`" not in shown}
    assert not missing, missing
