"""Sphinx configuration of cinder-reload's documentation (``tox -e docs``, tools/docs)."""

from __future__ import annotations

import sys
from pathlib import Path

# The project's own small extensions (the devref's table of how each option is applied).
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "cinder-reload"
author = "cinder-reload developers"
copyright = "2026, cinder-reload developers"

extensions = [
    # The configuration reference, generated from the options themselves
    # (the oslo.config.opts entry point, namespace cinder_reload) ...
    "oslo_config.sphinxext",
    # ... and a sample [reload] section generated at build time.
    "oslo_config.sphinxconfiggen",
    # The command line reference, from cinder_reload.cli's own parser.
    "sphinxarg.ext",
    # The devref's table of how a reload applies each class of option, from the code.
    "applied_options",
    # The benchmark page's tables, from the committed results files.
    "benchmark_tables",
]

config_generator_config_file = [
    ("../../etc/cinder-reload-config-generator.conf", "_static/cinder-reload"),
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]

# The man page is built from the command line reference: tools/docs, and the
# packages (debian/rules, rpm/cinder-reload.spec) with `-t man`, which needs
# nothing but Sphinx and sphinx-argparse (the distribution's) and the source
# tree: the other pages need the installed entry points.
if tags.has("man"):  # type: ignore[name-defined]  # noqa: F821  (Sphinx's `tags`)
    extensions = ["sphinxarg.ext"]
    root_doc = "cli/cinder-reload"
    include_patterns = ["cli/cinder-reload.rst"]  # whatever other pages there are
    html_static_path = []

man_pages = [
    ("cli/cinder-reload", "cinder-reload", "live, honest reload of OpenStack Cinder services", [author], 1),
]
