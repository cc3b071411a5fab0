"""A run as a Workflow Run RO-Crate, written with the `rocrate` library (the `provenance` extra).

The crate conforms to RO-Crate 1.3 and to the Process Run Crate profile 0.6, the member of the Workflow Run RO-Crate
family for one executed tool (https://w3id.org/ro/wfrun/process/0.6). Its Workflow Run Crate sibling needs a
workflow in a workflow language as its main entity; a harness run executes one command, so the process profile is
the one whose requirements a run meets. In the graph:

  CreateAction  #run-<id>            the run: command, start and end, status; instrument, object, result,
                                     containerImage and environment below
  SoftwareApplication + SoftwareSourceCode  #code-<commit>   the code: commit, tree, archive sha256, remote;
                                     softwareRequirements: the locked wheels, each with its sha256
  ContainerImage  #image-<id>        the environment image: image id (sha256), manifest digest, layers
  Dataset  #data-<snapshot>          the data snapshot (sha256 of its manifest), files and bytes
  PropertyValue  #param-<name>       each param (dotted names); object of the action, with params.json
  File  outputs/<path>               each output file, copied from the store (bytes checked), with its sha256
  PropertyValue  #metric-<name>      each recorded metric; result of the action, with the outputs
  File  record.json                  the record as sealed: its sha256 is the seal
"""

from __future__ import annotations

import json
import mimetypes
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.digests import canonical_json, sha256_bytes
from harness.errors import HarnessError
from harness.flatten import flat
from harness.provenance.sources import Sources
from harness.runs.outputlist import all_files

RO_CRATE_VERSION = "1.3"
PROFILE = "https://w3id.org/ro/wfrun/process/0.6"
PROFILE_VERSION = "0.6"
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
DOCKER_IMAGE = "https://w3id.org/ro/terms/workflow-run#DockerImage"


def _library() -> Any:
    try:
        from rocrate import rocrate
    except ImportError:
        raise HarnessError(
            "the ro-crate format needs the rocrate package, which is not installed",
            "pip install 'harness[provenance]' (it brings rocrate and prov)",
        ) from None
    return rocrate


def _value(value: Any) -> Any:
    """A PropertyValue's value: JSON scalars as they are, anything else as its JSON text."""
    return value if isinstance(value, str | int | float | bool) else json.dumps(value, sort_keys=True)


def _local(kind: str, name: str) -> str:
    """A local identifier for a named value: an IRI fragment, so a name's spaces or slashes are encoded."""
    return f"#{kind}-{quote(name, safe='.-_~')}"


def _sha(digest: str) -> str:
    return digest.removeprefix("sha256:")


def write_crate(record: dict[str, Any], sources: Sources, dest: Path) -> int:
    rocrate = _library()
    from rocrate.model.contextentity import ContextEntity

    crate = rocrate.ROCrate(version=RO_CRATE_VERSION)
    crate.metadata.extra_contexts.append(WFRUN_CONTEXT)

    def entity(ident: str, kind: str | list[str], **props: Any) -> Any:
        return crate.add(ContextEntity(crate, ident, properties={"@type": kind, **props}))

    run_id = record["id"]
    ended = record.get("finished_at") or record.get("started_at")
    root = crate.root_dataset
    root["name"] = f"harness run {run_id}: {record.get('name', '')}".rstrip(": ")
    root["description"] = (
        f"A run recorded by harness (record schema {record.get('schema', 'harness.run/1')}): "
        f"`{shlex.join(record.get('command', []))}` at commit {record.get('code', {}).get('commit', '?')}, "
        f"status {record.get('status')}."
    )
    if ended:
        root["datePublished"] = ended
    root.append_to("conformsTo", entity(PROFILE, "CreativeWork", name="Process Run Crate", version=PROFILE_VERSION))

    code = _code(record, entity)
    image = _image(record, entity)
    objects: list[Any] = []
    data = record.get("data") or {}
    if data.get("snapshot"):
        objects.append(
            entity(
                f"#data-{data['snapshot']}",
                "Dataset",
                name=f"data snapshot {data['snapshot'][:12]}",
                description=f"hashed, read-only data mounted at {data.get('mount', '/data')}: "
                f"{data.get('files', 0)} file(s), {data.get('bytes', 0)} bytes (sha256 of the snapshot manifest)",
                sha256=data["snapshot"],
                contentSize=str(data.get("bytes", 0)),
            )
        )
    params = record.get("params") or {}
    params_bytes = canonical_json(params)
    objects.append(
        crate.add_file(
            _staged(dest, "params.json", params_bytes),
            dest_path="params.json",
            properties={
                "name": "params",
                "description": "the run's params as canonical JSON (sorted keys, no whitespace): its sha256 is "
                "the record's params_digest",
                "encodingFormat": "application/json",
                "sha256": sha256_bytes(params_bytes),
                "contentSize": str(len(params_bytes)),
            },
        )
    )
    for name, value in flat(params).items():
        objects.append(entity(_local("param", name), "PropertyValue", name=name, value=_value(value)))

    results: list[Any] = []
    for path, digest in sorted(all_files(record.get("outputs") or {}, sources.store).items()):
        source = sources.output(digest)
        kind = mimetypes.guess_type(path)[0]
        props = {"name": path, "sha256": digest, "contentSize": str(source.stat().st_size)}
        results.append(
            crate.add_file(
                str(source),
                dest_path=f"outputs/{path}",
                properties={**props, **({"encodingFormat": kind} if kind else {})},
            )
        )
    for name, value in flat(record.get("metrics") or {}).items():
        results.append(entity(_local("metric", name), "PropertyValue", name=name, value=_value(value)))

    status = record.get("status")
    action_props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"harness run {run_id}",
        "description": shlex.join(record.get("command", [])),
        "actionStatus": {
            "@id": "http://schema.org/CompletedActionStatus"
            if status == "succeeded"
            else "http://schema.org/FailedActionStatus"
        },
    }
    if record.get("started_at"):
        action_props["startTime"] = record["started_at"]
    if record.get("finished_at"):
        action_props["endTime"] = record["finished_at"]
    if status != "succeeded":
        error = record.get("error") or {}
        action_props["error"] = error.get("message") or f"{status}, exit code {record.get('exit_code')}"
    action = crate.add_action(
        code, identifier=f"#run-{run_id}", object=objects, result=results, properties=action_props
    )
    if image is not None:
        action["containerImage"] = image
    env = (record.get("runtime") or {}).get("env") or {}
    if env:
        action["environment"] = [
            entity(_local("env", key), "PropertyValue", name=key, value=value) for key, value in sorted(env.items())
        ]
    root.append_to("mentions", action)

    sealed = sources.sealed_record()
    if sealed is not None:
        crate.add_file(
            _staged(dest, "record.json", sealed),
            dest_path="record.json",
            properties={
                "name": "harness run record",
                "description": "the run's record as sealed when it ended (canonical JSON): its sha256 is the seal",
                "encodingFormat": "application/json",
                "sha256": sha256_bytes(sealed),
                "about": action,
            },
        )
    crate.write(dest)
    return sum(1 for p in dest.rglob("*") if p.is_file())


def _code(record: dict[str, Any], entity: Any) -> Any:
    code = record.get("code") or {}
    commit = code.get("commit", "unknown")
    props: dict[str, Any] = {
        "name": (record.get("config") or {}).get("name") or record.get("name", "project"),
        "description": "the project's code exactly as committed"
        + (" plus uncommitted changes (a dirty run)" if code.get("dirty") else ""),
        "version": commit,
        "identifier": [
            entity(f"#git-commit-{commit}", "PropertyValue", propertyID="git-commit", value=commit),
            *(
                [entity(f"#git-tree-{code['tree']}", "PropertyValue", propertyID="git-tree", value=code["tree"])]
                if code.get("tree")
                else []
            ),
        ],
    }
    if code.get("archive"):
        props["sha256"] = code["archive"]  # the tar of the project's tree at the commit, as harness stores it
    if code.get("remote"):
        props["codeRepository"] = code["remote"]
    if code.get("committed_at"):
        props["dateModified"] = code["committed_at"]
    packages = (record.get("environment") or {}).get("packages") or []
    if packages:
        props["softwareRequirements"] = [
            entity(
                f"https://pypi.org/project/{p['name']}/{p['version']}/",
                "SoftwareApplication",
                name=p["name"],
                softwareVersion=p["version"],
                sha256=p["sha256"],
            )
            for p in packages
        ]
    return entity(f"#code-{commit}", ["SoftwareApplication", "SoftwareSourceCode"], **props)


def _image(record: dict[str, Any], entity: Any) -> Any:
    env = record.get("environment") or {}
    if not env.get("image_id"):
        return None
    props: dict[str, Any] = {
        "additionalType": {"@id": DOCKER_IMAGE},
        "name": env.get("image_ref") or env["image_id"],
        "sha256": _sha(env["image_id"]),
        "identifier": [d for d in (env["image_id"], env.get("manifest_digest")) if d],
    }
    if env.get("python"):
        props["description"] = f"Python {env['python']}; environment key {env.get('key', '?')}"
    return entity(f"#image-{_sha(env['image_id'])}", "ContainerImage", **props)


def _staged(dest: Path, name: str, data: bytes) -> str:
    """A file for the library to copy into the crate (it copies from paths), beside ``dest`` in the export's
    temporary directory, which goes when the export is done."""
    path = dest.parent / "staged" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)
