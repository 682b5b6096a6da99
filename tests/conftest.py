"""Shared test set-up: the repo's tests/ directory is importable (refdaemon,
helpers), and every test gets a private state directory."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
