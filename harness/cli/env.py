"""`harness env ...`: the environment images on this machine. Parse, call one core function, render."""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.app import AsJson, Project, command, new_app
from harness.cli.output import TerminalReporter, echo, print_json

HELP = """Environment images, built from a base and the hash-pinned lock into an image with a pure-function id.

The image id is a function of the base and the lock alone. The base is a recipe (images/<name>.toml),
a digest-pinned image, or a Dockerfile built once and archived. Records and layers live in the shared
cache (HARNESS_CACHE, default ~/.cache/harness), so an image removed from Docker is loaded back, not
rebuilt. Start with `harness env build` in a project, then `harness env verify` to prove the image
rebuilds bit for bit.
"""

VERIFY_MISMATCH_EXIT_CODE = 104  # EnvironmentBuildError: the rebuild differs from the record


def register(app: typer.Typer) -> None:
    env = new_app(HELP)
    command(env, "ls", list_envs)
    command(env, "show", show_env)
    command(env, "build", build_env)
    command(env, "verify", verify_env)
    app.add_typer(env, name="env")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def _yes(value: bool | None) -> str:
    return "?" if value is None else "yes" if value else "no"


def list_envs(project: Project = Path("."), as_json: AsJson = False) -> None:
    """List the environments recorded in the cache.

    One line each: key, image id, manifest digest (the image's id under
    Docker's containerd image store), Python, number of locked packages,
    whether the image is in Docker now ("?" when Docker is not reachable)
    and the size of its layers in the cache.
    Pass a key or id to `harness env show` for the details.

    Example: harness env ls --json | jq '.[] | select(.present == false) | .key'
    """
    from harness.env.catalog import cache_layout, connect_quietly, list_environments

    rows = list_environments(cache_layout(project), connect_quietly())
    if as_json:
        print_json(rows)
        return
    if not rows:
        echo("no environments in the cache yet; `harness env build` in a project builds one")
        return
    echo(f"{'KEY':16}  {'IMAGE ID':12}  {'MANIFEST':12}  {'BASE':10}  PYTHON   PKGS  IN DOCKER  SIZE")
    for r in rows:
        echo(
            f"{r['key'][:16]:16}  {r['image_id'][7:19]:12}  {r['manifest_digest'][7:19]:12}  {str(r['base']):10}  "
            f"{r['python']:7}  {r['packages']:4}  {_yes(r['present']):9}  {_size(r['size'])}"
        )


def show_env(
    query: Annotated[
        str,
        typer.Argument(metavar="KEY|IMAGE", help="Environment key, image id or manifest digest (a prefix of 4+)."),
    ],
    project: Project = Path("."),
    as_json: AsJson = False,
) -> None:
    """Show one environment: base recipe, layers (diff ids, sizes), packages.

    KEY|IMAGE matches by prefix (4+ digits) the environment key, the image id
    (sha256 of the config) or the manifest digest, or exactly the tag
    (harness-env:<key>).

    Example: harness env show 3f2a9c
    """
    from harness.env.catalog import cache_layout, connect_quietly, describe, find_environment

    layout = cache_layout(project)
    info = describe(find_environment(layout, query), layout, connect_quietly())
    if as_json:
        print_json(info)
        return
    echo(_render_show(info))


def _render_show(info: dict[str, Any]) -> str:
    lines = [
        f"key        {info['key']}",
        f"image      {info['image_id']}  ({info['image_ref']}, in Docker: {_yes(info['present'])})",
        f"manifest   {info['manifest_digest']}",
        f"python     {info['python']}",
        f"lock       {info['lock_digest']}",
        *(f"{'base' if i == 0 else '':10} {line}" for i, line in enumerate(info["base_summary"])),
        "layers",
    ]
    for layer in info["layers"]:
        where = _size(layer["size"]) if layer["stored"] else "not in the cache"
        lines.append(f"  {layer['role']:10} {layer['diff_id']}  {where}")
    lines.append(f"packages ({len(info['package_list'])})")
    for p in info["package_list"]:
        lines.append(f"  {p['name']:24} {p['version']:12} sha256:{p['sha256'][:16]}")
    return "\n".join(lines)


def build_env(project: Project = Path("."), as_json: AsJson = False) -> None:
    """Build (or reuse) the environment of the project in the current directory.

    Reads the base recipe and the lock from the working tree
    (`harness run` reads them from the commit being run).
    An image already in Docker is reused with no work; one whose layers are in
    the cache is loaded back with one `docker load`; otherwise the wheels are
    downloaded and hash-checked, the base is bootstrapped with mmdebstrap
    (once per machine, about 20 s) and the libraries are installed with the
    network off. Progress goes to stderr; the result says whether the image
    was built, loaded or reused.

    Example: harness env build && harness env verify
    """
    from harness.docker.engine import connect
    from harness.env.catalog import build_project

    result = build_project(project, connect(), TerminalReporter(as_json).progress)
    if as_json:
        print_json(result)
        return
    echo(f"{result['action']} {result['image_ref']}")
    echo(f"  image id  {result['image_id']}")
    echo(f"  manifest  {result['manifest_digest']}")
    echo(f"  python {result['python']}, {len(result['packages'])} packages")


def verify_env(project: Project = Path("."), as_json: AsJson = False) -> int:
    """Rebuild the project's environment from scratch; check it is bit for bit the recorded one.

    The rebuild uses a fresh temporary cache and reuses nothing: every wheel is
    downloaded again; a recipe base is bootstrapped again with mmdebstrap; a
    digest-pinned base is pulled again by digest or, when its registry cannot
    be reached, its stored layers are re-hashed against the digests recorded
    at first pull (the report says which); a Dockerfile base is archived, not
    rebuildable bit for bit, so its stored layers are re-hashed against the
    diff ids recorded when it was built.
    Compared with the record: the image id (config digest), the manifest
    digest and each layer's diff id; the recorded layers in the cache are
    re-hashed too. On a difference it names the layer and its first differing
    files (name, size, mode, sha256) and exits 104; on a match it exits 0.
    It takes as long as a cold build (mmdebstrap ~20 s, or the pull, plus the install).
    Nothing recorded is changed either way.

    Example: harness env build && harness env verify --json
    """
    from harness.docker.engine import connect
    from harness.env.verify import verify_project

    report = verify_project(project, connect(), TerminalReporter(as_json).progress)
    if as_json:
        print_json(report.to_dict())
    else:
        echo(_render_verify(report.to_dict()))
    return 0 if report.ok else VERIFY_MISMATCH_EXIT_CODE


def _render_verify(report: dict[str, Any]) -> str:
    recorded, rebuilt = report["recorded"], report["rebuilt"]
    base = f"  base      {report['base']['detail']}"
    if report["ok"]:
        return (
            f"verified: the rebuild of {report['key'][:16]} is the recorded image\n"
            f"  image id  {recorded['image_id']}\n  manifest  {recorded['manifest_digest']}\n{base}\n"
            + "\n".join(f"  {layer['role']:10} {layer['recorded']}" for layer in report["layers"])
        )
    lines = [f"MISMATCH: the rebuild of {report['key'][:16]} differs from the record", base]
    for name in ("image_id", "manifest_digest"):
        same = "same" if recorded[name] == rebuilt[name] else f"rebuilt {rebuilt[name]}"
        lines.append(f"  {name:16} recorded {recorded[name]}  {same}")
    for layer in report["layers"]:
        if layer["ok"]:
            lines.append(f"  layer {layer['index']} ({layer['role']}): same, {layer['recorded']}")
            continue
        lines.append(f"  layer {layer['index']} ({layer['role']}): recorded {layer['recorded']}")
        lines.append(f"      rebuilt {layer['rebuilt']}")
        if layer["stored"] != "ok":
            problem = "is missing" if layer["stored"] == "missing" else "no longer hashes to its name (altered)"
            lines.append(f"      the recorded layer in the cache {problem}")
        for diff in layer["differences"]:
            lines.append(f"      {_describe_difference(diff)}")
        if layer["note"]:
            lines.append(f"      {layer['note']}")
    lines.append(
        "hint: the recorded image and its layers were kept. A moving Debian mirror changes a recipe base (pin "
        "`mirror` to a snapshot in the recipe). An altered base layer is named above with how to repair it; an "
        "altered library layer is rebuilt after you remove the environment's record "
        f"(HARNESS_CACHE/images/{report['key']}.json)"
    )
    return "\n".join(lines)


def _describe_difference(diff: dict[str, Any]) -> str:
    from harness.env.verify import FileDifference

    return FileDifference(diff["path"], diff["recorded"], diff["rebuilt"]).describe()
