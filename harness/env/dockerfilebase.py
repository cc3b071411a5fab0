"""Building a Dockerfile base: ``docker build`` once per key, from exactly the files the key was made of.

    context   the Dockerfile and the files its COPY/ADD take (dockerfile.py), read from the commit being run, as
              one tar with fixed owners and mtimes
    build     the engine's classic builder (the Docker SDK's ``build``): FROM images the engine has are used as
              they are (``pull=False``), each output line goes to the progress callback, intermediate containers
              are removed even on failure, the image is tagged harness-base:dockerfile-<key[:16]>
    then      pinnedbase.py archives it exactly as a pulled image (docker save -> layers and config as objects)

``docker build`` is not reproducible (it stamps the build time into the config and every layer's files), so the
built image is archived, not rebuilt: every later run, and every rebuild of a recorded run, uses the archive.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from harness.docker.interface import BuildFailed, Engine
from harness.env.environment import Progress
from harness.env.recipe import Recipe
from harness.errors import EnvironmentBuildError, HarnessError
from harness.paths import Layout

NOT_REBUILDABLE = (
    "a Dockerfile base cannot be rebuilt bit for bit from its Dockerfile (docker build stamps the build time into "
    "the image, so a new build is a new image): only its archive in the cache is that image"
)


def build_dockerfile(
    recipe: Recipe, tag: str, layout: Layout, engine: Engine, say: Progress
) -> tuple[str, dict[str, Any]]:
    """Build the recipe's Dockerfile; (the built image's id, what decided the build, for the archive record)."""
    source = recipe.dockerfile_source
    if source is None:  # a recipe read back from a run record: there is nothing to build from, only the archive
        raise EnvironmentBuildError(
            f"Dockerfile base {recipe.dockerfile} (key {recipe.dockerfile_key[:16]}) is not archived in {layout.cache}"
            f"; {NOT_REBUILDABLE}",
            hint="restore the cache (HARNESS_CACHE) from a machine that has the archive, or accept a new base: "
            "`harness run` the commit again builds the Dockerfile anew and records a new image",
        )
    # No labels: the classic builder commits each label as a step of its own, with a container of its own (2.4-2.9 s
    # a label on these machines, measured: a build of FROM, COPY and RUN took 4.4-4.9 s without one, 7.3 s with
    # one). The tag names the image, and its archive record says everything a label would.
    labels: dict[str, str] = {}
    say(
        f"building base image from {source.path} with docker build ({len(source.files)} context files; only this "
        "once: it is archived in the cache)"
    )
    tmp_dir = layout.cache / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="context-", suffix=".tar")
    try:
        with os.fdopen(fd, "w+b") as fh:
            source.write_context(fh)
            fh.seek(0)
            image_id = engine.build_image(
                fh, source.name, labels, tag, network=source.network, progress=lambda line: say(f"  {line}")
            )
    except BuildFailed as exc:
        at = ""
        if exc.step is not None:  # the builder's step N is the Dockerfile's N-th instruction
            instruction = source.step(exc.step)
            at = f" at step {exc.step}, " + (instruction.where(source.path) if instruction else exc.step_text)
        output = "\n".join(f"  {line}" for line in exc.tail[-12:])
        network = (
            'RUN steps had no network (build_network = "none"); a step that downloads needs build_network = "host" '
            'or "bridge" in the config, or its files COPYed or ADDed (the engine fetches an ADD <url> itself)'
            if source.network == "none"
            else f"RUN steps had the {source.network} network (build_network)"
        )
        raise EnvironmentBuildError(
            f"docker build of {source.path} failed{at}: {exc.reason}; nothing was recorded as a base"
            + (f"\nlast lines of the build:\n{output}" if output else ""),
            hint=f"fix the Dockerfile, commit it and run again. FROM must name an image the engine has or can pull; "
            f"{network}",
        ) from None
    except HarnessError as exc:
        raise EnvironmentBuildError(
            f"docker build of {source.path} failed: {exc.message}; nothing was recorded as a base", exc.hint
        ) from None
    finally:
        Path(name).unlink(missing_ok=True)
    build = {
        "dockerfile": source.path,
        "dockerfile_digest": source.digest,
        "context_digest": source.context_digest,
        "context": [f.to_dict() for f in source.files],
        "image_id": image_id,
        "engine": engine.version().get("engine_version", ""),
        "network": source.network,
        "read_from": source.files_from.where,
    }
    return image_id, build
