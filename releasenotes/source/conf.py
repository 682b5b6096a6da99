"""Sphinx configuration of cinder-reload's release notes (reno; ``tox -e releasenotes``)."""

from __future__ import annotations

project = "cinder-reload release notes"
author = "cinder-reload developers"
copyright = "2026, cinder-reload developers"
extensions = ["reno.sphinxext"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
