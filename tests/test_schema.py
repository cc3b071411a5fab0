"""The published JSON Schema of harness.run/1 and the typed record in harness/runs/schema.py say the same thing;
real records are validated against it where the tests make them (tests/projects.py: valid_record)."""

from __future__ import annotations

import copy
import json
from typing import Any, get_type_hints

import jsonschema
import pytest

from harness.runs import schema

DOCUMENT = json.loads(schema.JSON_SCHEMA.read_text(encoding="utf-8"))

SECTIONS = {
    "code": schema.Code,
    "environment": schema.Environment,
    "data": schema.Data,
    "outputs": schema.Outputs,
    "runtime": schema.Runtime,
    "host": schema.Host,
    "error": schema.Error,
    "process": schema.Process,
    "log": schema.Log,
    "sweep": schema.Sweep,
}


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(DOCUMENT)
    assert DOCUMENT["properties"]["schema"] == {"const": schema.SCHEMA}
    assert DOCUMENT["properties"]["status"]["enum"] == list(schema.STATUSES)


@pytest.mark.parametrize("section", [None, *SECTIONS])
def test_the_json_schema_and_the_typed_record_agree(section: str | None) -> None:
    typed: Any = schema.RunRecord if section is None else SECTIONS[section]
    described = DOCUMENT if section is None else DOCUMENT["properties"][section]
    assert set(described["properties"]) == set(get_type_hints(typed)), "the same fields"
    assert set(described["required"]) == set(typed.__required_keys__), "the same required fields"


def test_a_record_of_the_wrong_shape_is_caught(recorded_example: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(DOCUMENT)
    assert list(validator.iter_errors(recorded_example)) == []
    for path, value in (
        (("status",), "done"),
        (("outputs", "files", "model.pkl"), "not a digest"),
        (("command",), "python train.py"),  # argv, never a shell string
        (("environment", "image_id"), "dcb1edbce7db"),
    ):
        broken = copy.deepcopy(recorded_example)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert list(validator.iter_errors(broken)), f"{'.'.join(path)} = {value!r} passed"
    missing = copy.deepcopy(recorded_example)
    del missing["code"]["commit"]
    assert list(validator.iter_errors(missing))


@pytest.fixture()
def recorded_example() -> dict[str, Any]:
    """A record as `harness run` writes it (values from a real run of tests/projects.py's probe project)."""
    digest = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
    return {
        "schema": "harness.run/1",
        "id": "761654",
        "name": "probe",
        "status": "succeeded",
        "exit_code": 0,
        "started_at": "2026-11-29T17:38:24.269Z",
        "finished_at": "2026-11-29T17:38:24.573Z",
        "duration_s": 0.304,
        "command": ["python", "main.py"],
        "params": {"exit": 0, "scale": 1},
        "params_digest": digest,
        "params_sources": {"exit": "default", "scale": "default"},
        "configs": [],
        "code": {
            "commit": "7367e1bbc7a86044264b911f3f693f6015bc1e88",
            "tree": "8227005dc30b325525374fdfbd772529355f93b4",
            "dirty": False,
            "patch": None,
            "diff": None,
            "changes": [],
            "branch": "main",
            "remote": None,
            "subject": "first",
            "committed_at": "2026-11-29T17:38:23.000Z",
            "committed_at_epoch": 1795973903,
            "project_path": "",
            "archive": digest,
        },
        "environment": {
            "key": digest,
            "image_id": "sha256:" + digest,
            "manifest_digest": "sha256:" + digest,
            "image_ref": "harness-env:4fd5c86393cbf83b",
            "base": {"name": "bookworm", "suite": "bookworm"},
            "lock_digest": digest,
            "python": "3.11.2",
            "packages": [{"name": "six", "version": "1.16.0", "sha256": digest}],
            "layers": ["sha256:" + digest],
            "recipe": "bookworm",
            "lock_file": "harness.lock",
            "lock_object": digest,
        },
        "data": {"snapshot": digest, "files": 1, "bytes": 8, "mount": "/data", "sources": {}, "read_only": True},
        "outputs": {"manifest": digest, "files": {"metrics.json": digest}, "bytes": 469},
        "metrics": {"total": 10},
        "host": {
            "engine_version": "20.10.24+dfsg1",
            "engine_api": "1.41",
            "os": "Linux",
            "cpu": "AMD EPYC",
            "cpus": 2,
            "hostname": "vm",
            "harness_version": "0.1.0",
            "ci": None,
        },
        "config": {"name": "probe"},
        "rebuild_of": None,
        "runtime": {
            "user": "65534:65534",
            "network": "none",
            "read_only_root": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "hostname": "harness",
            "workdir": "/code",
            "tmpfs": {"/tmp": "rw,nosuid,nodev,size=1g"},
            "mounts": [{"target": "/code", "read_only": True}],
            "env": {"TZ": "UTC"},
            "threads": 1,
            "params_helper": digest,
        },
        "params_read": None,
        "params_unread": None,
    }
