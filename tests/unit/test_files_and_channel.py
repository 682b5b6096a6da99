"""The files of one reload read once, safely; the control channel to a worker."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from oslo_config import cfg

from cinder_reload.channel import Channel, ChannelClosed
from cinder_reload.config import ConfigApplyFailed, ConfigInvalid, install, load_candidate, raw_sections
from cinder_reload.diff import ChangeKind, raw_changes
from cinder_reload.files import FileSnapshot, UnsafeFile, parsing_from, read_config_bytes


def make_conf(path: Path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("label", default="x")], group="b1")
    conf(["--config-file", str(path)], project="t", default_config_files=[])
    return conf


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "cinder.conf"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(UnsafeFile, match="FIFO"):
        read_config_bytes(str(fifo))
    assert time.monotonic() - started < 1.0


def test_a_device_and_an_oversized_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeFile, match="device"):
        read_config_bytes("/dev/zero")
    big = tmp_path / "big.conf"
    big.write_bytes(b"#" * 2048)
    with pytest.raises(UnsafeFile, match="more than the 1024"):
        read_config_bytes(str(big), limit=1024)


def test_a_broken_symlink_to_a_device_is_a_problem_of_that_file(tmp_path: Path) -> None:
    link = tmp_path / "cinder.conf"
    link.write_text("[b1]\nlabel = one\n")
    conf = make_conf(link)
    link.unlink()
    link.symlink_to("/dev/urandom")
    with pytest.raises(ConfigInvalid) as info:
        load_candidate(conf)
    assert "is a device or socket, not a regular file; refusing to read it" in str(info.value)


def test_each_file_is_read_once_and_every_parse_sees_those_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.conf"
    path.write_text("[b1]\nlabel = one\n")
    conf = make_conf(path)
    path.write_text("[b1]\nlabel = two\n")
    files = FileSnapshot()
    candidate = load_candidate(conf, files=files)
    assert candidate.b1.label == "two"
    # Edited again after validation: the running object gets what was validated.
    path.write_text("[b1]\nlabel = three\n")
    install(conf, files)
    assert conf.b1.label == "two"
    assert files.texts() == {str(path): "[b1]\nlabel = two\n"}


def test_parsing_from_a_snapshot_keeps_oslo_configs_own_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.conf"
    path.write_text("[b1]\nlabel = one\n")
    conf = make_conf(path)
    broken = FileSnapshot({str(path): "[b1\n"})
    with parsing_from(broken):
        assert conf.reload_config_files() is False  # oslo.config's own refusal, from the snapshot's bytes
    with pytest.raises(ConfigApplyFailed):
        install(conf, broken)
    assert conf.b1.label == "one"


def test_raw_sections_see_keys_no_option_covers(tmp_path: Path) -> None:
    path = tmp_path / "t.conf"
    path.write_text("[b1]\nlabel = one\ndriver_only = a\n")
    old = raw_sections(make_conf(path), ["b1"])
    path.write_text("[b1]\nlabel = one\ndriver_only = b\n")
    new = raw_sections(make_conf(path), ["b1"])
    diff = raw_changes(old, new, known={("b1", "label")})
    (change,) = diff.changes
    assert (change.group, change.name, change.kind, change.raw) == ("b1", "driver_only", ChangeKind.REINIT, True)
    assert change.shown() == ("****", "****")  # nothing says it is not a password
    assert not raw_changes(old, old, known=set()).changes


def test_channel_round_trip_and_end_of_stream() -> None:
    ours, theirs = Channel.pair()
    message = {"op": "apply", "id": 1, "options": [{"group": "DEFAULT", "name": "debug", "value": True}]}
    ours.send(message)
    assert theirs.receive() == message
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(_receive_or_closed(ours)))
    reader.start()
    theirs.close()  # the worker exits: the main process sees the end at once
    reader.join(5)
    assert got == ["closed"]


def _receive_or_closed(channel: Channel) -> object:
    try:
        return channel.receive()
    except ChannelClosed:
        return "closed"
