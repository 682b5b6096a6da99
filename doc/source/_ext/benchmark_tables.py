"""``.. cinder-reload-benchmarks:: benchmarks/results/core.json``: a suite's measured rows, from its results file;
``.. cinder-reload-targets:: benchmarks/results/stack.json``: the targets that suite judged from them.

The committed results (benchmarks/bench.py and bench_stack.py write them
with ``--json``) are the one copy of the figures: the page renders them at
every build, so it cannot show other numbers than the files hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parents[3]


def _cell(text: object) -> str:
    # Figures are plain text; backquotes mark commands and file names.
    return str(text).replace("`", "``").replace("````", "``").replace("|", "\\|") or "-"


def table(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpu']} ({m['cores']} cores), Debian {m['os']}, "
        f"kernel {m['kernel']}, Python {m['python']}" + (" (quick mode)." if report.get("quick") else "."),
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 46 18 26 10",
        "",
        "   * - figure",
        "     - measured",
        "     - baseline (same run)",
        "     - ratio",
    ]
    for row in report["rows"]:
        lines += [
            f"   * - {_cell(row['figure'])}",
            f"     - {_cell(row['value'])}",
            f"     - {_cell(row['baseline'])}",
            f"     - {row['ratio']:.3f}",
        ]
    return lines


def targets_table(report: dict[str, Any]) -> list[str]:
    """The targets the suite judged (bench_stack.py's ``targets``), each with what was measured."""
    verdict = {True: "yes", False: "**no**", None: "not measured"}
    if not report.get("targets"):
        return [f"(The results of {report['date']} judge no targets: they come from an earlier version of the suite.)"]
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 40 48 12",
        "",
        "   * - target",
        "     - measured (same run)",
        "     - holds",
    ]
    for target in report["targets"]:
        lines += [
            f"   * - {_cell(target['target'])}",
            f"     - {_cell(target['measured'])}",
            f"     - {verdict[target['holds']]}",
        ]
    return lines


class BenchmarkTable(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = REPO / self.arguments[0]
        self.env.note_dependency(str(path))
        report = json.loads(path.read_text())
        container = nodes.container()
        self.state.nested_parse(StringList(self.render(report), source=str(path)), 0, container)
        return list(container.children)

    def render(self, report: dict[str, Any]) -> list[str]:
        return table(report)


class TargetsTable(BenchmarkTable):
    def render(self, report: dict[str, Any]) -> list[str]:
        return targets_table(report)


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("cinder-reload-benchmarks", BenchmarkTable)
    app.add_directive("cinder-reload-targets", TargetsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
