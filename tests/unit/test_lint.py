"""lint.py in-process: the findings `check` prints, from texts and a real option table."""

from __future__ import annotations

import pytest
from oslo_config import cfg
from refdaemon import register_check_opts

from cinder_reload.lint import CheckHints, known_options, lint_files

AT = "/etc/svc/0.conf:"
NOWHERE = ": no option of this service is read from it"
MERGED = "; oslo.config merges the two, a key in both takes this one's value"
GOOD = "[DEFAULT]\ngreeting = hi\n[backend1]\nlabel = one\n[backend2]\nlabel = two\n"


def known(hints: CheckHints | None = None):  # type: ignore[no-untyped-def]
    conf = cfg.ConfigOpts()
    returned = register_check_opts(conf)
    return known_options(conf, hints or returned)


def findings(*texts: str, hints: CheckHints | None = None) -> tuple[list[str], list[str]]:
    files = {f"/etc/svc/{n}.conf": text for n, text in enumerate(texts)}
    errors, warnings = lint_files(files, known(hints), (hints or CheckHints()).required_sections)
    return [str(e) for e in errors], [str(w) for w in warnings]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, []),
        (
            GOOD.replace("label = one", "lable = one"),
            [AT + "4: [backend1] lable: unknown option, ignored (did you mean label?)"],
        ),
        (GOOD + "zzz = 1\n", [AT + "7: [backend2] zzz: unknown option, ignored"]),
        (
            GOOD + "[backend3]\nlabel = x\n",
            [AT + "7: unknown section [backend3]" + NOWHERE + " (did you mean backend2?)"],
        ),
        (
            GOOD + "[nothing_like_it]\n",
            [AT + "7: unknown section [nothing_like_it]" + NOWHERE],
        ),
        (
            GOOD.replace("label = one", "label = one\nlabel = uno"),
            [AT + "5: [backend1] label set again (first at line 4); this later value is the one used"],
        ),
        (
            GOOD + "[backend1]\nport = 2\n",
            [AT + "7: section [backend1] again (first at line 3)" + MERGED],
        ),
        (
            GOOD + "[BACKEND1]\nport = 2\n",
            [AT + "7: section [BACKEND1] again (first at line 3)" + MERGED],
        ),
        (
            GOOD.replace("greeting = hi", "banner = hi"),
            [AT + "2: [DEFAULT] banner is a deprecated name: use [DEFAULT] motd"],
        ),
        (
            GOOD.replace("greeting = hi", "old_knob = x"),
            [AT + "2: [DEFAULT] old_knob is deprecated for removal and may be ignored"],
        ),
        (GOOD + "[backend2\n", []),  # a syntax error: validation reports it, the lint says nothing
    ],
)
def test_warnings(text: str, expected: list[str]) -> None:
    errors, warnings = findings(text)
    assert errors == []
    assert warnings == expected


def test_a_key_set_in_two_files_is_no_duplicate() -> None:
    # conf.d overriding cinder.conf is how drop-ins work.
    assert findings(GOOD, "[backend1]\nlabel = from-conf-d\n") == ([], [])


def test_required_sections_and_templates() -> None:
    hints = CheckHints(templates={"lvm": "backend1"}, required_sections=("backend1", "lvm", "gone"))
    errors, warnings = findings(GOOD + "[LVM]\nlabel = l\nport = 3\nlable = typo\n", hints=hints)
    assert errors == ["[gone]: named by the configuration (enabled_backends) but no file has this section"]
    assert warnings == [AT + "10: [LVM] lable: unknown option, ignored (did you mean label?)"]
