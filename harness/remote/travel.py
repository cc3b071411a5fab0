"""The remote commands, each one call for the CLI: push, pull, rebuild from a remote, list a remote's runs, export
to and import from an OCI layout file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from harness.env.oci import ImageParts
from harness.errors import DataError, HarnessError, NotFound, UsageError
from harness.remote import reference
from harness.remote.push import Pushed, push_run
from harness.runs.records import Records

Say = Callable[[str], None]
Bytes = Callable[[int, int], None]


def push(
    project_dir: Path, runs: Sequence[str], remote: str | None, say: Say, progress: Bytes | None = None
) -> list[Pushed]:
    from harness.remote.client import connect

    ref = reference.resolve(remote, project_dir)
    layout = reference.store_layout(project_dir)
    records = Records(layout.runs, layout.index)
    ids = [records.resolve(r) for r in runs]  # every id checked before anything is sent
    registry = connect(ref)
    return [push_run(layout, run_id, registry, say, progress) for run_id in ids]


def pull(
    project_dir: Path,
    run: str,
    remote: str | None,
    say: Say,
    progress: Bytes | None = None,
    engine: Any = None,
) -> Any:
    """Pull a run into the stores; with ``engine``, its image goes into the engine instead of the cache when the
    engine can pull it by digest itself (see :func:`rebuild`)."""
    from harness.remote.client import connect
    from harness.remote.pull import pull_run

    ref = reference.resolve(remote, project_dir)
    layout = reference.store_layout(project_dir)
    registry = connect(ref)
    run_id = _full_id(registry, run, str(ref))
    elsewhere = None if engine is None else partial(engine_pulls, engine, str(ref), say)
    return pull_run(layout, run_id, registry, str(ref), say, progress, elsewhere)


def rebuild(project_dir: Path, run: str, remote: str | None, reporter: Any, progress: Bytes | None = None) -> Any:
    """Pull what this machine lacks of the run, then `harness rebuild` it. The environment image is pulled by
    the engine itself, by its manifest digest, as `docker pull REF@sha256:...` would (the engine checks every
    layer's digest, and the image id is checked against the record); where the engine cannot (a registry it
    does not trust, a login it lacks), its blobs come through harness into the cache, and the rebuild loads it
    from there."""
    from harness.docker.engine import connect as connect_engine
    from harness.runs.rebuild import rebuild as rebuild_run

    engine = connect_engine()
    pulled = pull(project_dir, run, remote, reporter.progress, progress, engine)
    return rebuild_run(project_dir, pulled.run, reporter, engine, layout=reference.store_layout(project_dir))


def engine_pulls(engine: Any, ref: str, say: Say, image: ImageParts) -> bool:
    """Whether the engine has the image, after asking it to pull the image by digest when it lacks it."""
    if engine.has_image(image.image_id):
        return True
    say(f"docker pull {ref}@sha256:{image.manifest_digest[:12]}...")
    try:
        engine.pull_image(f"{ref}@sha256:{image.manifest_digest}")
    except HarnessError as exc:
        say(f"the engine could not pull the image ({exc.message}); fetching its blobs into the cache instead")
        return False
    return bool(engine.has_image(image.image_id))


def _full_id(registry: Any, run: str, where: str) -> str:
    """A run id from an id or a unique prefix of one, among the runs the remote holds."""
    from harness.remote.artifact import RUN_TAG_PREFIX

    if registry.manifest(RUN_TAG_PREFIX + run) is not None:
        return run
    ids = [t.removeprefix(RUN_TAG_PREFIX) for t in registry.tags() if t.startswith(RUN_TAG_PREFIX)]
    matches = [i for i in ids if i.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"remote {where} has no run {run!r}", f"list its runs with `harness ls --remote {where}`")
    raise NotFound(f"run id {run!r} is ambiguous on {where}: {', '.join(sorted(matches))}", "give more characters")


def export(project_dir: Path, runs: Sequence[str], output: Path, say: Say, progress: Bytes | None = None) -> Any:
    """Write the runs' closures (records, code, data, outputs, images) to one OCI layout tar at ``output``."""
    from harness.remote.layout import LayoutWriter

    layout = reference.store_layout(project_dir)
    records = Records(layout.runs, layout.index)
    ids = [records.resolve(r) for r in runs]
    output = output.absolute()
    if output.exists() or output.is_symlink():
        raise UsageError(
            f"{output} already exists: nothing was written",
            "give -o a path that does not exist yet; harness never writes over what is there",
        )
    if not output.parent.is_dir():
        raise UsageError(f"{output.parent} is not a directory: nothing was written", "create it first")
    fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    results = []
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = LayoutWriter(fh)
            for run_id in ids:
                results.append(push_run(layout, run_id, writer, say, progress))
            writer.close()
        os.link(name, output)  # the file appears whole, or not at all; never over one that appeared meanwhile
        os.unlink(name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return {"file": str(output), "bytes": output.stat().st_size, "runs": [r.to_dict() for r in results]}


def import_file(project_dir: Path, path: Path, say: Say, progress: Bytes | None = None) -> list[Any]:
    from harness.remote.layout import LayoutReader
    from harness.remote.pull import pull_run

    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file", "give the file `harness export` wrote")
    layout = reference.store_layout(project_dir)
    reader = LayoutReader(path)
    try:
        runs = reader.runs()
        if not runs:
            raise DataError(f"{path} holds no harness runs", "export one with `harness export RUN -o FILE`")
        return [pull_run(layout, run_id, reader, str(path), say, progress) for run_id in runs]
    finally:
        reader.close()
