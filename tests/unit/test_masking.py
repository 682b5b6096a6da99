"""Secrets by option: what may be shown of a config file that holds passwords.

Each case is a file an operator could write; the assertion is that no part of
a secret value survives into the problems a reload or ``check`` reports.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg
from refdaemon import register_opts

from cinder_reload.config import ConfigInvalid, load_candidate
from cinder_reload.masking import line_may_be_shown, secret_names, secret_values_in_text

GOOD = "[DEFAULT]\ngreeting = hi\n[backend1]\nlabel = one\npassword = pw-one\n[backend2]\nlabel = two\n"
NAMES = secret_names([cfg.StrOpt("password", secret=True), cfg.StrOpt("label"), cfg.IntOpt("port")])


def running(tmp_path: Path) -> tuple[cfg.ConfigOpts, Path]:
    path = tmp_path / "svc.conf"
    path.write_text(GOOD)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(path)], project="svc", default_config_files=[], default_config_dirs=[])
    return conf, path


def reported(conf: cfg.ConfigOpts) -> str:
    with pytest.raises(ConfigInvalid) as info:
        load_candidate(conf)
    return "\n".join(str(p) for p in info.value.problems)


#: (file text, the secret parts that must never be shown)
LEAKS = {
    "continuation line after a blank line": (
        GOOD.replace("password = pw-one", "password =\n\n    wr4pped-s3cret"),
        ["wr4pped-s3cret"],
    ),
    "continuation line after a comment": (
        GOOD.replace("password = pw-one", "password = half-one\n# the rest\n    half-tw0"),
        ["half-one", "half-tw0"],
    ),
    "a new secret with no '='": (GOOD.replace("password = pw-one", "password n3w-s3cret"), ["n3w-s3cret"]),
    "a new secret with ':' and a broken line after it": (
        GOOD.replace("password = pw-one", "password: n3w-c0lon\n\n  [oops"),
        ["n3w-c0lon"],
    ),
    "a wrapped new secret, then a bad value elsewhere": (
        GOOD.replace("password = pw-one", "password = mysql://u:\n  p4ss-w0rd@db").replace(
            "label = two", "label = two\nport = 99999"
        ),
        ["p4ss-w0rd", "mysql://u:"],
    ),
    "an unknown key that looks like a password, in a broken file": (
        GOOD.replace("label = two", "label = two\nsan_password\n    zz-hidden-zz"),
        ["zz-hidden-zz"],
    ),
}


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_no_part_of_a_secret_in_the_problems(tmp_path: Path, case: str) -> None:
    conf, path = running(tmp_path)
    text, secrets = LEAKS[case]
    path.write_text(text)
    shown = reported(conf)
    for secret in [*secrets, "pw-one"]:
        assert secret not in shown, shown


def test_a_public_line_is_still_quoted(tmp_path: Path) -> None:
    conf, path = running(tmp_path)
    path.write_text(GOOD + "[backend2\n")
    assert "Invalid section (must end with ]): '[backend2'" in reported(conf)
    path.write_text(GOOD.replace("label = two", "label two"))
    assert "No ':' or '=' found in assignment (line not shown" in reported(conf)
    path.write_text(GOOD.replace("[backend2]\n", "[backend2]\nlabel = two\n\n    stray"))
    assert "Unexpected continuation line (line not shown" in reported(conf)


@pytest.mark.parametrize(
    ("lineno", "shown"),
    [(1, True), (2, True), (3, False), (4, False), (5, False), (6, False), (7, False), (99, False)],
)
def test_which_lines_may_be_quoted(lineno: int, shown: bool) -> None:
    text = "[b1]\nlabel = x\npassword = y\n    z\nnot an assignment\nunknown = v\n\n"
    assert line_may_be_shown(text, lineno, NAMES) is shown


def test_secret_values_follow_the_parser() -> None:
    text = "[b1]\nlabel = x\n  more-label\npassword = 'q1'\n  q2\n\n  q3\nchap_secret = q4\n"
    assert secret_values_in_text(text, NAMES) == ["q1", "q2", "q3", "q4"]


def test_every_free_text_field_of_a_worker_record_is_masked() -> None:
    from cinder_reload.cycle import CycleResult
    from cinder_reload.report import build_report
    from cinder_reload.workers import WorkerResult

    secret = "pw-quoted-by-a-driver"
    worker = WorkerResult(
        "fake1",
        42,
        False,
        f"fake1 (pid 42): cannot connect with {secret}",
        failed_groups={"fake1": f"RuntimeError: {secret}"},
        report={"problems": [f"[fake1] x: {secret}"], "generation": 3},
        old_pid=41,
        paused_s=0.5,
        start_s=0.25,
    )
    doc = build_report(
        service="svc",
        pid=1,
        generation=1,
        result=CycleResult(workers=[worker]),
        started_at="t0",
        finished_at="t1",
        started_monotonic=1.0,
        duration=0.5,
        secrets=[secret],
    )
    record = doc["workers"][0]
    assert secret not in repr(doc)
    assert record["message"] == "fake1 (pid 42): cannot connect with ****"
    assert record["failed_groups"] == {"fake1": "RuntimeError: ****"}
    assert record.get("problems") in (None, ["[fake1] x: ****"])
    assert (record["worker"], record["pid"], record["old_pid"], record["paused_s"]) == ("fake1", 42, 41, 0.5)
    assert doc["result"] == "failed" and "****" in doc["message"]


def test_the_log_filter_masks_message_arguments_and_exception_text() -> None:
    """A real logger and handler: what reaches the formatted line is masked."""
    import io
    import logging

    from cinder_reload.masking import SecretLogFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("cinder_reload.test_masking_filter")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    secrets = ["s3cr3t-pw"]
    log_filter = SecretLogFilter(lambda: list(secrets))
    logger.addFilter(log_filter)
    try:
        logger.info("plain %s and %d", "s3cr3t-pw", 7)
        logger.info("already in the text: s3cr3t-pw")
        try:
            raise RuntimeError("driver could not connect with s3cr3t-pw")
        except RuntimeError:
            logger.exception("re-initialising [%s] failed", "b1")
        secrets.clear()  # nothing secret known: records pass untouched
        logger.info("no secrets: %s", "visible")
    finally:
        logger.removeFilter(log_filter)
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "s3cr3t-pw" not in out
    assert "INFO plain **** and 7" in out and "INFO already in the text: ****" in out
    assert "ERROR re-initialising [b1] failed" in out and "RuntimeError: driver could not connect with ****" in out
    assert "Traceback (most recent call last)" in out, "the traceback is kept, masked"
    assert "INFO no secrets: visible" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password = 'single'", ["single"]),
        ('password = "double"', ["double"]),
        ("password: colon-sep", ["colon-sep"]),
        ("password = a=b:c", ["a=b:c"]),
        ("password: u=v", ["u=v"]),
        ("password   =   spaced   ", ["spaced"]),
        ("connection = mysql://u:p4ss@db/x", []),  # not secret in NAMES: the caller's names decide
        ("passwd = heuristic", ["heuristic"]),  # unknown key that looks like a credential
        ("label = public\n  more public", []),
        ("label: a = b", []),
        ("# password = commented out", []),
        ("password =\n\n  orphan", ["orphan"]),
        ("password = one\n  two\n[b2]\n  three", ["one", "two", "three"]),
        ("password = x\nlabel = y\n  z", ["x"]),
        ("s3cret-alone-on-a-line", ["s3cret-alone-on-a-line"]),
        ("password s3cret-no-separator", ["password s3cret-no-separator", "s3cret-no-separator"]),
    ],
)
def test_secret_values_table(text: str, expected: list[str]) -> None:
    assert secret_values_in_text("[b1]\n" + text + "\n", NAMES) == expected
