"""`harness export`: a real run written as a Workflow Run RO-Crate and as W3C PROV-JSON, each read back with its own
library's reader (rocrate.ROCrate, prov.read)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.projects import harness

pytestmark = [pytest.mark.docker]

PROFILE = "https://w3id.org/ro/wfrun/process/0.6"


def _run(project: Path, *args: str) -> dict[str, Any]:
    done = harness(project, "run", "--json", *args)
    record = json.loads(done.stdout)
    assert "id" in record, done.stderr
    return record


def _seal(project: Path, run_id: str) -> str:
    return json.loads((project / ".harness" / "seals" / run_id).read_text())["record"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _id(value: Any) -> str:
    """An entity's id; a reference to an entity the crate does not describe reads back as the id itself."""
    return value if isinstance(value, str) else value.id


def _ids(value: Any) -> list[str]:
    return [_id(v) for v in (value if isinstance(value, list) else [value])]


def test_ro_crate_of_a_real_run_reads_back_with_the_rocrate_library(probe_project: Path, tmp_path: Path) -> None:
    from rocrate.rocrate import ROCrate

    record = _run(probe_project)
    seal = _seal(probe_project, record["id"])
    (tmp_path / "exports").mkdir()
    out = tmp_path / "exports" / "run.crate"
    done = harness(probe_project, "export", record["id"][:8], "-f", "ro-crate", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"run": record["id"], "format": "ro-crate", "path": str(out), "files": 6}

    raw = json.loads((out / "ro-crate-metadata.json").read_text())
    assert raw["@context"] == [
        "https://w3id.org/ro/crate/1.3/context",
        "https://w3id.org/ro/terms/workflow-run/context",
    ]
    crate = ROCrate(out)
    assert _id(crate.metadata["conformsTo"]) == "https://w3id.org/ro/crate/1.3"
    assert _ids(crate.root_dataset["conformsTo"]) == [PROFILE]
    assert crate.get(PROFILE)["version"] == "0.6"

    [action] = crate.get_by_type("CreateAction")
    assert _ids(crate.root_dataset["mentions"]) == [action.id] == [f"#run-{record['id']}"]
    assert action["description"] == "python main.py"
    assert action["startTime"] == record["started_at"] and action["endTime"] == record["finished_at"]
    assert _id(action["actionStatus"]) == "http://schema.org/CompletedActionStatus"

    code = action["instrument"]
    assert set(code.type) == {"SoftwareApplication", "SoftwareSourceCode"}
    assert code["version"] == record["code"]["commit"] and code["sha256"] == record["code"]["archive"]
    assert {(i["propertyID"], i["value"]) for i in code["identifier"]} == {
        ("git-commit", record["code"]["commit"]),
        ("git-tree", record["code"]["tree"]),
    }
    [six] = code["softwareRequirements"]
    assert (six["name"], six["softwareVersion"]) == ("six", "1.16.0") and len(six["sha256"]) == 64

    image = action["containerImage"]
    assert image.type == "ContainerImage"
    assert "sha256:" + image["sha256"] == record["environment"]["image_id"]
    assert _id(image["additionalType"]) == "https://w3id.org/ro/terms/workflow-run#DockerImage"

    objects = {e.id: e for e in action["object"]}
    data = objects[f"#data-{record['data']['snapshot']}"]
    assert data.type == "Dataset" and data["sha256"] == record["data"]["snapshot"]
    params = {e["name"]: e["value"] for e in objects.values() if e.type == "PropertyValue"}
    assert params == {"scale": 1, "exit": 0, "sleep": 0}
    assert objects["params.json"]["sha256"] == _sha256(out / "params.json") == record["params_digest"]

    results = {e.id: e for e in action["result"]}
    files = {e["name"]: e for e in results.values() if e.type == "File"}
    assert set(files) == set(record["outputs"]["files"]) == {"probe.json", "sub/total.txt", "metrics.json"}
    for path, entity in files.items():
        assert entity.id == f"outputs/{path}"
        assert entity["sha256"] == _sha256(out / "outputs" / path) == record["outputs"]["files"][path]
    assert files["probe.json"]["encodingFormat"] == "application/json"
    metrics = {e["name"]: e["value"] for e in results.values() if e.type == "PropertyValue"}
    assert metrics == {"total": 10, "nested.n": 4}

    sealed = crate.get("record.json")
    assert sealed["sha256"] == _sha256(out / "record.json") == seal
    assert json.loads((out / "record.json").read_text()) == record
    assert sealed["about"].id == action.id

    # An existing path is never written over.
    again = harness(probe_project, "export", record["id"], "-f", "ro-crate", "-o", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert json.loads((out / "ro-crate-metadata.json").read_text()) == raw
    assert [p.name for p in out.parent.iterdir()] == ["run.crate"]  # no temporary directory left


def test_prov_json_of_a_real_run_reads_back_with_the_prov_library(probe_project: Path, tmp_path: Path) -> None:
    import prov
    from prov.model import ProvActivity, ProvAgent, ProvEntity, ProvGeneration, ProvUsage

    record = _run(probe_project)
    out = tmp_path / "run.prov.json"
    done = harness(probe_project, "export", record["id"], "--format", "prov", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote run {record['id']} as prov to {out}" in done.stdout

    doc = prov.read(out, format="json")
    [activity] = doc.get_records(ProvActivity)
    assert str(activity.identifier) == f"run:{record['id']}"
    assert activity.get_startTime() is not None and activity.get_endTime() is not None
    [agent] = doc.get_records(ProvAgent)
    assert "harness" in str(agent.identifier)
    entities = {str(e.identifier): e for e in doc.get_records(ProvEntity)}
    commit = record["code"]["commit"]
    used = {str(u.get_attribute("prov:entity").pop()) for u in doc.get_records(ProvUsage)}
    assert used == {
        f"code:{commit}",
        f"image:{record['environment']['image_id'].removeprefix('sha256:')}",
        f"data:{record['data']['snapshot']}",
        f"params:{record['params_digest']}",
    }
    generated = {str(g.get_attribute("prov:entity").pop()) for g in doc.get_records(ProvGeneration)}
    outputs = {f"output:{record['id']}/{path}": sha for path, sha in record["outputs"]["files"].items()}
    seal = _seal(probe_project, record["id"])
    assert generated == {*outputs, f"record:{seal}"}
    for ident, sha in outputs.items():
        assert entities[ident].get_attribute("harness:sha256") == {sha}
    assert entities[f"code:{commit}"].get_attribute("harness:tree") == {record["code"]["tree"]}


def test_a_failed_run_exports_as_a_failed_action_and_a_changed_record_not_at_all(
    probe_project: Path, tmp_path: Path
) -> None:
    from rocrate.rocrate import ROCrate

    failed = _run(probe_project, "-c", "fail")
    assert failed["status"] == "failed" and failed["exit_code"] == 3
    out = tmp_path / "failed.crate"
    assert harness(probe_project, "export", failed["id"], "-f", "ro-crate", "-o", str(out)).returncode == 0
    [action] = ROCrate(out).get_by_type("CreateAction")
    assert _id(action["actionStatus"]) == "http://schema.org/FailedActionStatus"
    assert "3" in action["error"]

    record_file = probe_project / ".harness" / "runs" / failed["id"] / "record.json"
    edited = json.loads(record_file.read_text())
    edited["exit_code"] = 0
    record_file.chmod(0o644)
    record_file.write_text(json.dumps(edited))
    refused = harness(probe_project, "export", failed["id"], "--format", "prov", "-o", str(tmp_path / "x.json"))
    assert refused.returncode == 107 and "no longer matches its seal" in refused.stderr
    assert not (tmp_path / "x.json").exists()
