"""Limits without an engine: sizes as written, the defaults a host gets, what a rebuild takes from a record, the
capped log byte for byte, and the size watch on a real directory."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError, UsageError
from harness.project.config import parse_config
from harness.project.limitconfig import parse_limit_options
from harness.runs.limits import Capacity, Limits, from_record, resolve
from harness.runs.logcap import CappedLog
from harness.runs.sizewatch import SizeWatch, Watched, tree_size
from harness.units import format_size, parse_size

GIB = 1 << 30
HOST = Capacity(memory=24 * GIB, cpus=2, disk_free=100 * GIB, disk_size=250 * GIB)


@pytest.mark.parametrize(
    ("written", "size"),
    [("8g", 8 * GIB), ("512m", 512 << 20), ("1.5G", 3 * GIB // 2), ("64KiB", 64 << 10), ("100", 100), (7, 7)],
)
def test_sizes_are_read_as_docker_reads_them(written: str | int, size: int) -> None:
    assert parse_size(written) == size


@pytest.mark.parametrize("written", ["lots", "8 gigs", "-1", "", "1e9"])
def test_what_is_not_a_size_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(written)


def test_sizes_are_shown_in_binary_units() -> None:
    assert [format_size(n) for n in (900, 64 << 20, 22116937728, 1 << 40)] == [
        "900 bytes",
        "64 MiB",
        "20.6 GiB",
        "1 TiB",
    ]


def test_the_defaults_protect_the_host() -> None:
    limits = resolve({}, {}, HOST)
    assert limits["memory"] == 24 * GIB - 3 * GIB  # an eighth kept back
    assert resolve({}, {}, Capacity(4 * GIB, 2, 0, 0))["memory"] == 4 * GIB - 512 * (1 << 20)  # at least 512 MiB
    assert resolve({}, {}, Capacity(256 * GIB, 64, 0, 0))["memory"] == 252 * GIB  # at most 4 GiB
    assert limits["outputs"] == (100 * GIB - 250 * GIB // 20) // (1 << 20) * (1 << 20)  # free less 5% of the disk
    assert (limits["pids"], limits["cpus"], limits["state"], limits["log"]) == (4096, None, 64 << 20, 64 << 20)


def test_the_command_line_wins_over_the_config_and_none_lifts_a_limit() -> None:
    limits = resolve({"pids": 100, "memory": GIB}, parse_limit_options(["pids=200", "log=none"]), HOST)
    assert (limits["pids"], limits["memory"], limits["log"]) == (200, GIB, None)
    assert (limits.sources["pids"], limits.sources["memory"], limits.sources["log"]) == ("--limit", "config", "--limit")


def test_the_config_table_is_checked_naming_its_key() -> None:
    text = 'name = "x"\nbase = "bookworm"\nlock = "harness.lock"\ncommand = ["true"]\n[limits]\n'
    config = parse_config(text + 'memory = "2g"\ncpus = 1.5\n', Path("harness.toml"), Path("/p"))
    assert config.limits == {"memory": 2 * GIB, "cpus": 1.5}
    with pytest.raises(ConfigError, match=r"harness.toml: limits.memroy: unknown limit") as caught:
        parse_config(text + 'memroy = "2g"\n', Path("harness.toml"), Path("/p"))
    assert "did you mean 'memory'" in str(caught.value.hint)
    with pytest.raises(ConfigError, match=r"tool.harness.limits.cpus: 0.001 is below"):
        parse_config(
            "[tool.harness]\n" + text.replace("[limits]", "[tool.harness.limits]") + "cpus = 0.001\n",
            Path("pyproject.toml"),
            Path("/p"),
        )


def test_more_cpus_than_the_host_has_is_an_error_naming_where_they_were_set() -> None:
    with pytest.raises(UsageError, match="--limit cpus: 8 CPUs, and the engine's host has 2"):
        resolve({}, {"cpus": 8}, HOST)
    with pytest.raises(ConfigError, match="harness.toml: limits.cpus: 8 CPUs"):
        resolve({"cpus": 8}, {}, HOST, "harness.toml: limits")


def test_a_rebuild_takes_the_recorded_limits_within_what_this_host_gives() -> None:
    recorded = resolve({"memory": 64 << 20}, {"pids": 64, "cpus": 2}, HOST).to_record()
    limits, notes = from_record(recorded, HOST)
    assert limits.to_record() == recorded and notes == []
    smaller = Capacity(memory=8 * GIB, cpus=1, disk_free=20 * GIB, disk_size=250 * GIB)
    big = resolve({"memory": 16 * GIB}, {}, HOST).to_record()
    limits, notes = from_record(big, smaller)
    assert limits["memory"] == 7 * GIB and limits["cpus"] is None
    assert limits["outputs"] == (20 * GIB - 250 * GIB // 20) // (1 << 20) * (1 << 20)  # the default: this disk's
    assert notes == ["limit memory: the run had 16 GiB, this host gives at most 7 GiB: using that"]
    limits, notes = from_record(recorded, smaller)
    assert limits["cpus"] == 1 and notes == ["limit cpus: the run had 2, this host has 1: using 1"]


def test_a_record_without_limits_rebuilds_under_this_hosts_defaults_and_says_so() -> None:
    limits, notes = from_record(None, HOST)
    assert limits.to_record() == resolve({}, {}, HOST).to_record()
    assert len(notes) == 1 and "made before harness recorded them" in notes[0] and "pids 4096" in notes[0]


def _capped(limit: int | None, chunks: list[bytes]) -> tuple[bytes, CappedLog]:
    file = io.BytesIO()
    log = CappedLog(file, limit)
    for chunk in chunks:
        log.write(chunk)
    log.close()
    return file.getvalue(), log


def test_a_log_under_its_limit_is_kept_whole() -> None:
    data, log = _capped(100, [b"a" * 60, b"b" * 40])
    assert data == b"a" * 60 + b"b" * 40 and (log.total, log.dropped) == (100, 0)
    assert _capped(None, [b"x" * 1000])[0] == b"x" * 1000


@pytest.mark.parametrize("chunk", [1, 7, 33, 1000])
def test_a_log_over_its_limit_keeps_the_first_and_last_halves_exactly(chunk: int) -> None:
    stream = b"".join(b"%05d\n" % i for i in range(200))  # 1,200 bytes
    data, log = _capped(300, [stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    head, _, rest = data.partition(b"[harness: ")
    marker, _, tail = rest.partition(b"]\n")
    assert head == stream[:150] and tail == stream[-150:]
    assert b"900 bytes of output dropped here" in marker and (log.total, log.dropped) == (1200, 900)


def test_while_over_its_limit_the_log_holds_its_head_and_says_the_tail_comes_at_the_end() -> None:
    file = io.BytesIO()
    log = CappedLog(file, 10)
    log.write(b"abc\n" * 5)
    assert file.getvalue().startswith(b"abc\na\n[harness: the log is over its limit")


def test_the_watch_stops_a_directory_going_over_its_limit_soon(tmp_path: Path) -> None:
    caught: list[tuple[str, int]] = []
    with SizeWatch([Watched("outputs", tmp_path, 1 << 20)], lambda w, size: caught.append((w.key, size))) as watch:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "big").write_bytes(b"x" * (2 << 20))
        deadline = time.monotonic() + 10
        while not caught and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [key for key, _ in caught] == ["outputs"] and caught[0][1] > 1 << 20  # maybe before it all landed
        assert time.monotonic() - (deadline - 10) < 3
    assert watch.over == (Watched("outputs", tmp_path, 1 << 20), caught[0][1])


def test_the_watch_walks_a_big_directory_only_when_the_disk_grew_past_the_room_left(tmp_path: Path) -> None:
    for i in range(100):
        (tmp_path / f"f{i}").write_bytes(b"x" * 100)
    # idle_share 0: as if walking it cost too much to do on every tick
    with SizeWatch([Watched("outputs", tmp_path, 1 << 40)], lambda w, size: None, 0.05, idle_share=0) as watch:
        time.sleep(1)
    assert watch.walks == 0 and watch.over is None
    with SizeWatch([Watched("outputs", tmp_path, 1 << 40)], lambda w, size: None, 0.05) as watch:
        time.sleep(1)
    assert watch.walks >= 5  # a walk of 100 files costs next to nothing: every tick


def test_tree_size_counts_files_not_what_links_point_to(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"x" * 5)
    os.symlink("/etc/passwd", tmp_path / "link")
    assert tree_size(tmp_path) == 15


def test_limits_lookup_of_a_missing_key_is_no_limit() -> None:
    assert Limits({})["memory"] is None and Limits({}).size("log") is None
