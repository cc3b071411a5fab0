"""`harness sweep`: the grid a sweep expands (how values, commas and lists are written), and sweeps end to end
against the real engine: runs at once, every run an ordinary record, a failed run among them, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.docker.interface import Engine
from harness.errors import ConfigError
from harness.project.params import load_params_file, merge_params
from harness.project.sweepgrid import MAX_RUNS, build_grid
from harness.runs import ownership
from harness.runs.limits import Capacity, Limits
from harness.runs.query import parse_where
from tests.projects import cli_env, harness, valid_record

# -- the grid ---------------------------------------------------------------------------------------------


def test_p_values_are_a_yaml_list_and_the_grid_is_their_cross_product() -> None:
    grid = build_grid(None, None, ["lr=0.001,0.01, 0.1", "depth=3,5"])
    assert grid.size == 6
    points = grid.points()
    assert points[0] == (("lr", 0.001), ("depth", 3))
    assert points[1] == (("lr", 0.001), ("depth", 5))  # the last axis changes fastest
    assert points[5] == (("lr", 0.1), ("depth", 5))
    assert build_grid(None, None, ["lr=0.1"]).points() == [(("lr", 0.1),)]


def test_a_literal_comma_is_quoted_and_a_list_value_is_bracketed() -> None:
    names = build_grid(None, None, ['name="a,b",c', "tag='x, y'"]).axes
    assert names[0].values == ("a,b", "c") and names[1].values == ("x, y",)
    layers = build_grid(None, None, ["layers=[64,64],[128]", "opt.flags=[]"]).axes
    assert layers[0].values == ([64, 64], [128]) and layers[1].key == "opt.flags" and layers[1].values == ([],)


def test_the_params_file_sweep_block_nests_and_p_replaces_its_axis_in_place() -> None:
    named, block = load_params_file(
        "fast: {lr: 0.5}\nsweep:\n  lr: [0.1, 0.2]\n  model: {depth: [3, 5], kind: tree}\n  layers: [[1, 2]]\n",
        "params.yaml",
    )
    assert named == {"fast": {"lr": 0.5}}  # the block is no named config
    grid = build_grid(block, "params.yaml", ["lr=0.3,0.4,0.5"])
    assert [(a.key, a.values, a.source) for a in grid.axes] == [
        ("lr", (0.3, 0.4, 0.5), "-p"),
        ("model.depth", (3, 5), "params.yaml"),
        ("model.kind", ("tree",), "params.yaml"),
        ("layers", ([1, 2],), "params.yaml"),
    ]
    assert grid.size == 6
    with pytest.raises(ConfigError, match="no named config 'sweep'") as caught:
        merge_params({}, named, ["sweep"], [], "params.yaml")
    assert "'sweep' is the sweep block" in str(caught.value.hint)


@pytest.mark.parametrize(
    ("block", "items", "message"),
    [
        (None, [], "nothing to sweep"),
        (None, ["lr="], "has no values"),
        (None, ["lr"], "expected key=value"),
        (None, ["a..b=1"], "expected key=value"),
        (None, ["lr=[1,2"], "is not a list of values"),
        ([1, 2], [], "expected a mapping"),
        ({"model": {}}, [], "empty mapping"),
        (None, [f"a={','.join(['1'] * 101)}", f"b={','.join(['1'] * 100)}"], f"more than the {MAX_RUNS:,}"),
    ],
)
def test_what_is_no_grid_is_a_config_error(block: Any, items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_grid(block, "params.yaml", items)


def test_swept_values_override_everything_and_say_so() -> None:
    params = merge_params({"lr": 1, "opt": {"m": 0.9}}, {}, [], ["lr=2"], None, (("lr", 0.1), ("opt.m", 0.5)))
    assert params.values == {"lr": 0.1, "opt": {"m": 0.5}}
    assert params.sources == {"lr": "sweep", "opt.m": "sweep"}


def test_runs_at_once_share_the_host_defaults_and_keep_what_was_set() -> None:
    limits = Limits({"memory": 8 << 30, "outputs": 100 << 30, "pids": 4096}, {"outputs": "config"})
    shared = limits.shared(3)
    assert shared["memory"] == ((8 << 30) // 3) & ~((1 << 20) - 1) and shared["outputs"] == 100 << 30
    assert shared["pids"] == 4096 and shared.sources == limits.sources and limits.shared(1) is limits


def test_where_sweep_is_the_sweep_id_and_sweep_index_the_record_field() -> None:
    record = {"sweep": {"id": "5e1f0a2c", "index": 2, "size": 4}, "data": {"snapshot": "s", "files": 3}}
    assert parse_where('sweep == "5e1f0a2c" and sweep.index == 2 and sweep.size == 4')(record)
    assert not parse_where('sweep == "other"')(record)
    assert parse_where('data == "s" and data.files == 3')(record)
    assert not parse_where('sweep == "5e1f0a2c"')({"data": {}})


# -- sweeps against the real engine -----------------------------------------------------------------------


def _show(root: Path, run_id: str) -> dict[str, Any]:
    shown = harness(root, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return valid_record(json.loads(shown.stdout))


def _store_containers(engine: Engine, project: Path) -> list[dict[str, Any]]:
    return engine.containers({ownership.STORE_LABEL: os.path.realpath(project / ".harness")})


def _run_ids(project: Path) -> list[str]:
    runs = project / ".harness" / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


@pytest.mark.docker
def test_a_sweep_runs_two_at_once_and_records_every_run_as_an_ordinary_run(probe_project: Path, engine: Engine) -> None:
    project = probe_project
    result = harness(project, "sweep", "-p", "scale=1,2", "-p", "exit=0,3", "-p", "sleep=2", "-j", "2", "--json")
    assert result.returncode == 2, result.stderr  # two runs failed: the exit code says how many
    out = json.loads(result.stdout)
    assert (out["size"], out["succeeded"], out["failed"], out["interrupted"]) == (4, 2, 2, False)
    assert result.stderr.count("harness: hashing code") == 1  # code, image and data prepared once
    assert "sweep " + out["sweep"] + ": 4/4 done, 0 running, 2 failed" in result.stderr

    records = [_show(project, run["run"]) for run in out["runs"]]
    assert [r["sweep"] for r in records] == [{"id": out["sweep"], "index": i, "size": 4} for i in range(4)]
    assert [(r["params"]["scale"], r["params"]["exit"]) for r in records] == [(1, 0), (1, 3), (2, 0), (2, 3)]
    assert [r["params_sources"]["scale"] for r in records] == ["sweep"] * 4
    assert [(r["status"], r["exit_code"]) for r in records] == [
        ("succeeded", 0),
        ("failed", 3),
        ("succeeded", 0),
        ("failed", 3),
    ]
    assert [r["metrics"]["total"] for r in records] == [10, 10, 20, 20]
    for key in (("code", "archive"), ("environment", "image_id"), ("data", "snapshot")):
        assert len({r[key[0]][key[1]] for r in records}) == 1
    host = Capacity.of(engine.resources(), project / ".harness").defaults()  # two at once: half the memory each
    assert [r["runtime"]["limits"]["memory"] for r in records] == [(int(host["memory"] or 0) // 2) >> 20 << 20] * 4
    # -j 2: some two runs were in their containers at the same time (each sleeps 2 s)
    spans = sorted((r["started_at"], r["finished_at"]) for r in records)
    assert any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)), spans

    listed = harness(project, "ls", "--where", f'sweep == "{out["sweep"]}" and status == "failed"', "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["id"] for r in json.loads(listed.stdout)) == sorted(out["runs"][i]["run"] for i in (1, 3))
    one = harness(project, "ls", "--where", "sweep.index == 2", "--json")
    assert [r["id"] for r in json.loads(one.stdout)] == [out["runs"][2]["run"]]

    rebuilt = harness(project, "rebuild", out["runs"][2]["run"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = _show(project, json.loads(rebuilt.stdout)["rebuild"])
    assert "sweep" not in again and again["rebuild_of"] == out["runs"][2]["run"]
    assert _store_containers(engine, project) == []


@pytest.mark.docker
def test_ctrl_c_stops_the_sweep_removes_its_containers_and_records_its_runs_interrupted(
    probe_project: Path, engine: Engine
) -> None:
    project = probe_project
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", "-p", "sleep=120", "-p", "scale=1,2,3", "-j", "2"],
        cwd=project,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err: list[str] = []
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: err.extend(iter(stderr.readline, "")), daemon=True).start()

    def logs_say_probe_ran() -> int:
        found = 0
        for run_id in _run_ids(project):
            log = project / ".harness" / "runs" / run_id / "log.txt"
            found += log.is_file() and "probe ran" in log.read_text(errors="replace")
        return found

    deadline = time.monotonic() + 180
    while logs_say_probe_ran() < 2:  # both containers are running their code
        assert proc.poll() is None, "".join(err)
        assert time.monotonic() < deadline, "".join(err)
        time.sleep(0.05)
    assert len(_store_containers(engine, project)) == 2

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, "".join(err)
    assert _store_containers(engine, project) == [], "".join(err)
    ids = _run_ids(project)
    assert len(ids) == 2  # the third run never started
    for run_id in ids:
        record = _show(project, run_id)
        assert record["status"] == "interrupted" and record["exit_code"] is None
        assert (project / ".harness" / "runs" / run_id / "log.txt").is_file()
    text = "".join(err)
    assert "stopped: 3 runs, 0 succeeded, 0 failed, 2 interrupted, 1 not started" in text
    listed = harness(project, "ls", "--where", 'status == "running"', "--json")
    assert json.loads(listed.stdout) == []


@pytest.mark.docker
def test_an_executor_from_outside_runs_the_plan_from_its_tasks_and_json_records(
    probe_project: Path, engine: Engine
) -> None:
    """The plug point a cluster executor uses: it gets the plan, turns each task into a run with plan.start (the
    record as plain JSON, as it would travel to a worker) and reports through the events it is given."""
    from harness.runs.executor import Events, Outcome, Task
    from harness.runs.runner import RunRequest, execute
    from harness.runs.sweep import SweepPlan, SweepRequest, sweep

    class Quiet:
        def progress(self, message: str) -> None: ...
        def output(self, stream: str, chunk: bytes) -> None: ...
        def started(self, run_id: str) -> None: ...

    class OneByOne:
        def __init__(self, plan: SweepPlan, control: Engine) -> None:
            self.plan, self.control = plan, control

        def run_all(self, tasks: list[Task], events: Events) -> list[Outcome]:
            outcomes = []
            for task in tasks:
                inputs, record = self.plan.start(task)
                record = json.loads(json.dumps(record))
                done = execute(inputs, record, self.control, Quiet()).record
                outcome = Outcome(task.index, done["id"], done["status"], done["exit_code"])
                events.finished(task, outcome)
                outcomes.append(outcome)
            return outcomes

    class Collected:
        def __init__(self) -> None:
            self.done: list[int] = []

        def progress(self, message: str) -> None: ...
        def planned(self, sweep_id: str, grid: Any, jobs: int) -> None: ...
        def started(self, task: Task, run_id: str) -> None: ...
        def note(self, task: Task, message: str) -> None: ...

        def finished(self, task: Task, outcome: Outcome, counts: Any) -> None:
            self.done.append(task.index)

    events = Collected()
    request = SweepRequest(RunRequest(project_dir=probe_project), axes=("scale=1,2",), jobs=2)
    result = sweep(request, events, lambda: engine, lambda plan, control, connect: OneByOne(plan, control))
    assert result.exit_code == 0 and [o.status for o in result.outcomes] == ["succeeded", "succeeded"]
    records = [_show(probe_project, str(o.run_id)) for o in result.outcomes]
    assert [r["sweep"] for r in records] == [{"id": result.id, "index": i, "size": 2} for i in range(2)]
    assert [r["metrics"]["total"] for r in records] == [10, 20] and events.done == [0, 1]
