"""``.. cinder-reload-applied-options::``: how a reload applies each class of option, from the code.

The table is cinder_reload.cinder.applied's, rendered at every build: the
documentation cannot say something the code does not do.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


class AppliedOptions(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from cinder_reload.cinder.applied import rst

        container = nodes.container()
        self.state.nested_parse(StringList(rst().splitlines(), source="cinder_reload.cinder.applied"), 0, container)
        return list(container.children)


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("cinder-reload-applied-options", AppliedOptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
