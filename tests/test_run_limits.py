"""Resource limits against the real engine: a fork bomb, a memory hog, a run that fills /outputs and one that floods
its log each meet their limit; the limits are recorded, come from the config and --limit, and a rebuild runs under
the recorded ones."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from harness.runs.rebuild import rebuild
from tests.projects import commit_all, harness, valid_record

pytestmark = pytest.mark.docker

# What the kernel enforces, read from inside: cgroup v1 (this engine) or v2.
PROBE_LIMITS = r"""
import json, os
def first(*paths):
    for path in paths:
        if os.path.exists(path):
            return open(path).read().strip()
print("LIMITS " + json.dumps({
    "pids": first("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
    "memory": first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
    "memory_swap": first("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "/sys/fs/cgroup/memory.swap.max"),
    "oom_score_adj": open("/proc/self/oom_score_adj").read().strip(),
}), flush=True)
"""


class Reporter:
    def progress(self, message: str) -> None:
        self.notes.append(message)

    def output(self, stream: str, chunk: bytes) -> None:
        pass

    def started(self, run_id: str) -> None:
        pass

    def __init__(self) -> None:
        self.notes: list[str] = []


def _run(root: Path, *args: str, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    result = harness(root, "run", "--json", *args, timeout=timeout)
    assert result.stdout, result.stderr
    return result.returncode, valid_record(json.loads(result.stdout)), result.stderr


def _run_summary(root: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """A run as a person sees it: the summary on stderr; the record read back."""
    result = harness(root, "run", *args)
    run_id = re.search(r"^harness: run (\w+) started$", result.stderr, re.M)
    assert run_id, result.stderr
    shown = harness(root, "show", run_id.group(1), "--json")
    return result.returncode, valid_record(json.loads(shown.stdout)), result.stderr


def _log(root: Path, record: dict[str, Any]) -> bytes:
    return (root / ".harness" / "runs" / record["id"] / "log.txt").read_bytes()


def _seen_inside(log: bytes) -> dict[str, str]:
    line = next(line for line in log.decode().splitlines() if line.startswith("LIMITS "))
    return dict(json.loads(line[len("LIMITS ") :]))


def test_a_fork_bomb_stops_at_the_pids_limit_and_the_run_ends(probe_project: Path) -> None:
    started = time.monotonic()
    bomb = PROBE_LIMITS + "[os.fork() for _ in range(3000)]\n"
    code, record, _ = _run(probe_project, "--limit", "pids=64", "--", "python", "-c", bomb, timeout=120)
    assert time.monotonic() - started < 90
    assert _seen_inside(_log(probe_project, record))["pids"] == "64"
    assert record["runtime"]["limits"]["pids"] == 64 and record["runtime"]["limits"]["sources"]["pids"] == "--limit"
    assert record["status"] == "failed" and code == record["exit_code"] != 0
    assert b"Resource temporarily unavailable" in _log(probe_project, record)  # fork failed inside, as documented


def test_every_run_has_default_limits_on_pids_memory_and_swap(probe_project: Path) -> None:
    code, record, _ = _run(probe_project, "--", "python", "-c", PROBE_LIMITS)
    assert code == 0, record.get("error")
    limits = record["runtime"]["limits"]
    inside = _seen_inside(_log(probe_project, record))
    assert inside["pids"] == "4096" == str(limits["pids"])
    assert inside["memory"] == str(limits["memory"])  # the host's memory less a reserve, not unlimited
    assert inside["memory_swap"] in (str(limits["memory"]), "0")  # memory + swap = memory: no swap
    assert inside["oom_score_adj"] == "500" == str(limits["oom_score_adj"])
    assert limits["cpus"] is None and limits["log"] == 64 << 20 and limits["state"] == 64 << 20
    assert limits["outputs"] > 0 and set(limits["sources"].values()) == {"default"}


def test_a_run_over_its_memory_limit_is_failed_with_reason_oom_and_show_says_what_to_raise(
    probe_project: Path,
) -> None:
    hog = "b = bytearray(256 << 20); print('survived')"  # bytearray touches every page (zeroed)
    code, record, _ = _run(probe_project, "--limit", "memory=64m", "--", "python", "-c", hog)
    assert record["status"] == "failed" and record["exit_code"] == 137 == code
    assert record["error"]["reason"] == "oom" and record["error"]["limit"] == "memory"
    assert "64 MiB" in record["error"]["message"] and "--limit memory=128m" in record["error"]["hint"]
    assert b"survived" not in _log(probe_project, record)
    shown = harness(probe_project, "show", record["id"])
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^error +oom: the run ran out of memory", shown.stdout, re.M), shown.stdout
    assert re.search(r"^hint +raise the memory limit", shown.stdout, re.M), shown.stdout
    assert re.search(r"^limits +memory 64 MiB \(--limit\)", shown.stdout, re.M), shown.stdout


def test_a_run_writing_past_its_outputs_limit_is_stopped_and_failed(probe_project: Path) -> None:
    writer = "open('/outputs/big', 'wb').write(b'x' * 5_000_000); import time; time.sleep(120)"
    started = time.monotonic()
    code, record, stderr = _run_summary(probe_project, "--limit", "outputs=1m", "--", "python", "-c", writer)
    assert time.monotonic() - started < 60, "the run was not stopped"
    assert record["status"] == "failed" and record["exit_code"] == 137 == code
    assert record["error"]["reason"] == "outputs over limit" and record["error"]["limit"] == "outputs"
    assert "container was stopped" in record["error"]["message"]
    assert "--limit outputs=2m" in record["error"]["hint"]
    assert record["outputs"]["bytes"] == 5_000_000 and "big" in record["outputs"]["files"]  # kept and recorded
    assert re.search(r"^  error +outputs over limit: the run wrote", stderr, re.M), stderr  # the summary says it
    assert re.search(r"^  hint +raise the outputs limit", stderr, re.M), stderr


def test_a_run_that_ends_over_its_outputs_limit_is_failed_though_it_exited_0(probe_project: Path) -> None:
    """Faster than the watch: the same verdict, so whether a limit holds does not depend on timing."""
    code, record, _ = _run(
        probe_project,
        "--limit",
        "outputs=1m",
        "--",
        "python",
        "-c",
        "open('/outputs/big', 'wb').write(b'x' * 5_000_000)",
    )
    assert record["status"] == "failed" and record["exit_code"] == 0 and code == 1
    assert record["error"]["reason"] == "outputs over limit" and "when the run ended" in record["error"]["message"]


def test_a_run_over_its_state_limit_is_failed(probe_project: Path) -> None:
    writer = "open('/harness/state/junk', 'wb').write(b'x' * 100_000)"
    code, record, _ = _run(probe_project, "--limit", "state=10k", "--", "python", "-c", writer)
    assert record["status"] == "failed" and code == 1
    assert record["error"]["reason"] == "state over limit" and record["error"]["limit"] == "state"


def test_the_log_keeps_its_head_and_tail_and_says_how_much_was_dropped(probe_project: Path) -> None:
    printer = "for i in range(100_000): print(f'line {i:06d} ' + 'x' * 40)"  # 5,300,000 bytes
    code, record, stderr = _run_summary(probe_project, "--limit", "log=1m", "--", "python", "-c", printer)
    assert code == 0 and record["status"] == "succeeded"  # a long log is no failure
    assert record["log"] == {"bytes": 5_300_000, "dropped": 5_300_000 - (1 << 20)}
    log = _log(probe_project, record)
    head, marker, tail = re.split(rb"\n?(\[harness: [^\]]*\])\n", log)
    assert head.startswith(b"line 000000 ") and len(head) == 512 << 10
    assert tail.endswith(b"line 099999 " + b"x" * 40 + b"\n") and len(tail) == 512 << 10
    assert f"{5_300_000 - (1 << 20):,} bytes of output dropped here".encode() in marker
    assert "log.txt dropped" in stderr  # the summary warns


def test_limits_come_from_the_config_and_the_command_line_wins(probe_project: Path) -> None:
    config = probe_project / "harness.toml"
    config.write_text(config.read_text() + '\n[limits]\npids = 100\nmemory = "1g"\ncpus = 1\n')
    commit_all(probe_project, "limits")
    code, record, _ = _run(probe_project, "--limit", "pids=200", "--", "python", "-c", PROBE_LIMITS)
    assert code == 0, record.get("error")
    limits = record["runtime"]["limits"]
    assert (limits["pids"], limits["memory"], limits["cpus"]) == (200, 1 << 30, 1)
    assert limits["sources"] | {"outputs": "-"} == {
        "pids": "--limit",
        "memory": "config",
        "cpus": "config",
        "outputs": "-",
        "state": "default",
        "log": "default",
    }
    inside = _seen_inside(_log(probe_project, record))
    assert (inside["pids"], inside["memory"]) == ("200", str(1 << 30))


@pytest.mark.parametrize(
    ("args", "config", "exit_code", "named"),
    [
        (("--limit", "memory=lots"), "", 2, "--limit memory: 'lots' is not a size"),
        (("--limit", "mem=1g"), "", 2, "did you mean 'memory'"),
        (("--limit", "pids"), "", 2, "expected KEY=VALUE"),
        (("--limit", "memory=1m"), "", 2, "below the 6 MiB"),
        (("--limit", "cpus=4096"), "", 2, "--limit cpus: 4096 CPUs, and the engine's host has"),
        ((), 'memory = "lots"', 101, "harness.toml: limits.memory: 'lots' is not a size"),
        ((), "pids = 0", 101, "harness.toml: limits.pids: 0 is not a positive count"),
        ((), "outputs = true", 101, "harness.toml: limits.outputs: True is not a size"),
    ],
)
def test_a_bad_limit_is_an_error_naming_where_it_was_set(
    probe_project: Path, args: tuple[str, ...], config: str, exit_code: int, named: str
) -> None:
    if config:
        path = probe_project / "harness.toml"
        path.write_text(path.read_text() + f"\n[limits]\n{config}\n")
        commit_all(probe_project, "bad limit")
    result = harness(probe_project, "run", *args)
    assert result.returncode == exit_code, result.stderr
    assert named in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr
    assert not list((probe_project / ".harness" / "runs").glob("*/record.json"))  # refused before anything ran


def test_a_rebuild_runs_under_the_recorded_limits(probe_project: Path) -> None:
    code, original, _ = _run(
        probe_project, "--limit", "pids=64", "--limit", "log=1m", "--", "python", "-c", PROBE_LIMITS
    )
    assert code == 0, original.get("error")
    reporter = Reporter()
    result = rebuild(probe_project, original["id"], reporter)
    limits, recorded = dict(result.record["runtime"]["limits"]), dict(original["runtime"]["limits"])
    # A default outputs limit is this disk's free space, which other processes move: never more than recorded.
    assert limits.pop("outputs") <= recorded.pop("outputs")
    assert limits == recorded and limits["pids"] == 64 and limits["log"] == 1 << 20
    assert _seen_inside(_log(probe_project, dict(result.record)))["pids"] == "64"
    assert not [n for n in reporter.notes if n.startswith("limit")], reporter.notes


def test_diff_names_limits_the_two_runs_set_differently_not_the_hosts_defaults(probe_project: Path) -> None:
    _, first, _ = _run(probe_project, "--limit", "pids=64", "--", "python", "-c", "pass")
    _, second, _ = _run(probe_project, "--limit", "pids=128", "--", "python", "-c", "pass")
    result = harness(probe_project, "diff", first["id"], second["id"], "--json")
    assert result.returncode == 1, result.stderr
    runtime = json.loads(result.stdout)["inputs"]["differences"]["runtime"]
    limits = [r for r in runtime if r["key"].startswith("limits.")]
    assert limits == [{"key": "limits.pids", "old": 64, "new": 128}]
