"""`harness run` end to end: real git, real Docker engine, real image, real container, real records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.projects import PROBE_CONFIG as CONFIG
from tests.projects import cli_env, commit_all, git, harness, valid_record

pytestmark = pytest.mark.docker


@pytest.fixture()
def project(probe_project: Path) -> Path:
    return probe_project


def _show(root: Path, run_id: str) -> dict[str, Any]:
    result = harness(root, "show", run_id, "--json")
    assert result.returncode == 0, result.stderr
    return valid_record(json.loads(result.stdout))


def _run_json(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    result = harness(root, "run", "--json", *args, env=env)
    return result.returncode, valid_record(json.loads(result.stdout)), result.stderr


def test_run_is_hermetic_and_fully_recorded(project: Path) -> None:
    (project / "ignored.local").write_text("never in the container\n")
    git(project, "check-ignore", "-q", "data/numbers/values.txt")
    result = harness(project, "run", "--commit", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "probe ran" in result.stdout and "to stderr" in result.stderr  # streamed live, each to its own stream
    run_id = result.stderr.split("harness: run ", 1)[1].split()[0]
    record = _show(project, run_id)

    assert record["schema"] == "harness.run/1" and record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["code"]["commit"] == git(project, "rev-parse", "HEAD").strip()
    assert record["code"]["dirty"] is False and record["code"]["patch"] is None
    inspected = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", record["environment"]["image_id"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert inspected == record["environment"]["image_id"]
    assert record["environment"]["packages"] == [
        {
            "name": "six",
            "version": "1.16.0",
            "sha256": "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
        }
    ]
    assert record["environment"]["python"].startswith("3.11")
    assert record["data"]["files"] == 1 and record["data"]["bytes"] == 8 and len(record["data"]["snapshot"]) == 64
    assert record["params"] == {"scale": 1, "exit": 0, "sleep": 0}
    assert record["metrics"] == {"total": 10, "nested": {"n": 4}}
    assert record["host"]["engine_version"] and record["host"]["ci"] is None

    outputs = project / ".harness" / "runs" / run_id / "outputs"
    import hashlib

    assert set(record["outputs"]["files"]) == {"probe.json", "metrics.json", "sub/total.txt"}
    objects = project / ".harness" / "objects"
    for rel, sha in record["outputs"]["files"].items():
        assert hashlib.sha256((outputs / rel).read_bytes()).hexdigest() == sha
        # stored once: the file in the run directory is the store object itself, read-only
        assert os.path.samefile(outputs / rel, objects / sha[:2] / sha[2:])
        assert (outputs / rel).stat().st_mode & 0o222 == 0
    assert not list(outputs.parent.glob(".harness-replace*")) and not (outputs.parent / "skipped").exists()
    assert record["outputs"]["read_only"] is True and record["outputs"]["skipped"] == []
    assert "probe ran" in (project / ".harness" / "runs" / run_id / "log.txt").read_text()

    probe = json.loads((outputs / "probe.json").read_text())
    assert probe["uid"] != 0
    assert probe["interfaces"] == ["lo"]  # --network none
    assert probe["hostname"] == "harness"
    assert probe["write_code"] is probe["write_data"] is probe["write_root"] is False
    assert "ignored.local" not in probe["code_files"] and "main.py" in probe["code_files"]
    assert probe["env"]["TZ"] == "UTC" and probe["env"]["PYTHONHASHSEED"] == "0"
    assert probe["env"]["SOURCE_DATE_EPOCH"] == git(project, "log", "-1", "--format=%ct").strip()
    assert probe["env"]["OMP_NUM_THREADS"] == "1" and probe["env"]["HARNESS_PARAM_SCALE"] == "1"
    assert probe["six"] == "1.16.0" and probe["python"].startswith("/opt/venv/")

    listing = harness(project, "ls")
    header = listing.stdout.splitlines()[1].split()
    row = next(line for line in listing.stdout.splitlines() if run_id in line)
    assert "succeeded" in row and header[-1] == "total" and row.split()[-1] == "10"  # the metrics column


def test_second_run_builds_nothing_and_params_reach_the_code(project: Path) -> None:
    code, first, _ = _run_json(project)
    assert code == 0
    code, second, stderr = _run_json(project, "-c", "double", "-p", "exit=0")
    assert code == 0
    assert "building" not in stderr.lower()
    assert second["environment"]["image_id"] == first["environment"]["image_id"]
    assert second["metrics"]["total"] == 20
    assert second["params_sources"]["scale"] == "config:double" and second["params_sources"]["exit"] == "override"
    listed = json.loads(harness(project, "ls", "--json").stdout)
    assert [r["id"] for r in listed] == [second["id"], first["id"]]


def test_failing_entry_point_is_recorded_with_its_exit_code_and_log(project: Path) -> None:
    code, record, _ = _run_json(project, "-c", "fail")
    assert code == 3
    assert record["status"] == "failed" and record["exit_code"] == 3
    assert "probe ran" in (project / ".harness" / "runs" / record["id"] / "log.txt").read_text()
    assert record["outputs"]["files"]  # outputs written before the failure are kept and hashed


def test_dirty_tree_is_refused_naming_files_then_recorded_with_allow_dirty(project: Path) -> None:
    (project / "main.py").write_text((project / "main.py").read_text().replace("probe ran", "dirty probe ran"))
    (project / "notes.txt").write_text("new\n")
    refused = harness(project, "run")
    assert refused.returncode == 103
    assert "main.py" in refused.stderr and "notes.txt" in refused.stderr and "--allow-dirty" in refused.stderr
    assert not (project / ".harness" / "runs").exists() or not list((project / ".harness" / "runs").iterdir())

    code, record, _ = _run_json(project, "--allow-dirty")
    assert code == 0 and record["code"]["dirty"] is True
    assert {c["path"] for c in record["code"]["changes"]} == {"main.py", "notes.txt"}
    assert "dirty probe ran" in (project / ".harness" / "runs" / record["id"] / "log.txt").read_text()
    probe = json.loads((project / ".harness" / "runs" / record["id"] / "outputs" / "probe.json").read_text())
    assert "notes.txt" in probe["code_files"]
    patch_obj = record["code"]["patch"]
    assert (project / ".harness" / "objects" / patch_obj[:2] / patch_obj[2:]).is_file()
    assert "DIRTY" in harness(project, "ls").stdout

    in_ci = harness(project, "run", "--allow-dirty", env=cli_env(CI="true"))
    assert in_ci.returncode == 103 and "CI never runs a dirty tree" in in_ci.stderr


def test_ci_json_is_one_document_with_provider_facts(project: Path) -> None:
    env = cli_env(CI="true", GITHUB_ACTIONS="true", GITHUB_RUN_ID="42", GITHUB_REPOSITORY="org/repo")
    code, record, stderr = _run_json(project, env=env)
    assert code == 0
    assert record["host"]["ci"] == {"provider": "github-actions", "run_id": "42", "repository": "org/repo"}
    assert "probe ran" in stderr  # the container's output goes to stderr under --json


@pytest.mark.parametrize(
    ("change", "args", "exit_code", "message"),
    [
        ("none", ["--commit", "nope"], 102, "unknown revision 'nope'"),
        ("rm-data", [], 105, "data/numbers"),
        ("bad-hash", [], 104, "six"),
        ("stale-lock", [], 101, "the lock is older than requirements.txt"),
        ("bad-key", [], 101, "harness.toml: comand: unknown key"),
    ],
)
def test_bad_input_is_refused_clearly(
    project: Path, change: str, args: list[str], exit_code: int, message: str
) -> None:
    if change == "rm-data":
        (project / "data" / "numbers" / "values.txt").unlink()
        (project / "data" / "numbers").rmdir()
    elif change == "bad-hash":
        lock = project / "harness.lock"
        lock.write_text(lock.read_text().replace("8abb2f1d", "0000000d"))
        commit_all(project, "corrupt the lock")
    elif change == "stale-lock":
        (project / "requirements.txt").write_text("six==1.16.0\nnumpy\n")
        commit_all(project, "new requirement, lock not updated")
    elif change == "bad-key":
        (project / "harness.toml").write_text('comand = ["x"]\n' + CONFIG)
        commit_all(project, "typo")
    result = harness(project, "run", *args)
    assert result.returncode == exit_code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "hint:" in result.stderr or exit_code == 102


def test_code_with_a_submodule_is_refused_naming_it(project: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helpers.py").write_text("X = 1\n")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "lib")):
        git(lib, *args)
    git(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib")
    commit_all(project, "add a submodule")
    pinned = git(lib, "rev-parse", "HEAD").strip()
    result = harness(project, "run")
    assert result.returncode == 102, result.stderr
    assert f"submodule vendor/lib (commit {pinned[:12]})" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr and "probe ran" not in result.stdout
    assert json.loads(harness(project, "ls", "--json").stdout) == [], "nothing was run or recorded"


def test_docker_unreachable_is_a_clear_error(project: Path) -> None:
    result = harness(project, "run", env=cli_env(DOCKER_HOST="unix:///nonexistent/docker.sock"))
    assert result.returncode == 106
    assert "cannot reach the Docker engine" in result.stderr and "docker info" in result.stderr


def test_two_runs_at_once_both_succeed_with_distinct_ids(project: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--json"],
            cwd=project,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stdout.read() if p.stdout else "") for p in procs]
    assert [code for code, _ in results] == [0, 0]
    ids = {json.loads(out)["id"] for _, out in results}
    assert len(ids) == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_the_container_and_records_the_run_as_interrupted(project: Path, signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "-p", "sleep=60"],
        cwd=project,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # wait until the container is running its code
        if "probe ran" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signum)
    code = proc.wait(timeout=60)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 130, stderr
    run_id = stderr.split("harness: run ", 1)[1].split()[0]
    record = _show(project, run_id)
    assert record["status"] == "interrupted"
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=org.harness.run={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert left == ""
    assert os.path.exists(project / ".harness" / "runs" / run_id / "log.txt")
