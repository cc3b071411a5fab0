"""Project configuration: ``[tool.harness]`` in pyproject.toml or a ``harness.toml`` -> a frozen value.

Every error names the key path (``tool.harness.data.hours: ...``) and the file it is in. The config is read
from the commit being run (see runner), so an uncommitted edit to it cannot leak into a clean run.
"""

from __future__ import annotations

import difflib
import os
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import ConfigError
from harness.paths import ENV_HOME, Layout, cache_root
from harness.project.codepaths import check_paths
from harness.project.command import placeholders
from harness.project.limitconfig import LimitValue, parse_limits_table

CONFIG_FILES = ("harness.toml", "pyproject.toml")

# key -> (expected python types, description); the description feeds error messages and `harness init`.
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a short name for runs of this project (default: the directory name)"),
    "base": ((str,), "the base image: a recipe name under images/ (e.g. 'bookworm'), or a Dockerfile's path"),
    "lock": ((str,), "the lock file: hash-pinned wheels for the image (harness.lock, or PEP 751 pylock.toml)"),
    "requirements": ((str,), "what `harness lock` resolves: a requirements file, or pyproject.toml's dependencies"),
    "command": (
        (list, str),
        "the entry point, as an argv list (a string is split once, like a shell would); {name} is a param's value",
    ),
    "params_file": ((str,), "YAML file of named param configs, selected with -c NAME"),
    "defaults_file": (
        (str,),
        "YAML file whose top-level keys are the default params (DVC's params.yaml); [params] applies over it",
    ),
    "data": ((dict,), "data to snapshot: name = path; mounted read-only at /data/<name>"),
    "params": ((dict,), "default params, passed to the code as JSON and environment variables"),
    "env": ((dict,), "extra fixed environment variables for the container (recorded in the run)"),
    "paths": ((dict,), "paths in /code that lead to /data/... or /outputs/... (code that uses DVC's paths)"),
    "metrics": ((list,), "output files read as metrics besides metrics.json and metrics.jsonl (JSON objects)"),
    "threads": ((int,), "thread count pinned for BLAS/OpenMP libraries (default 1, recorded)"),
    "build_network": (
        (str,),
        "the network RUN steps get when a Dockerfile base is built: none (default), host or bridge",
    ),
    "limits": ((dict,), "resource limits of each run: memory, cpus, pids, outputs, state, log (recorded)"),
    "remote": ((str,), "the OCI repository runs are pushed to and pulled from, e.g. 'registry.example/team/bikes'"),
}
BUILD_NETWORKS = ("none", "host", "bridge")
RESERVED_DATA_NAMES = {"", ".", ".."}


@dataclass(frozen=True)
class DataSource:
    name: str
    path: Path  # absolute host path
    configured: str  # as written in the config

    @property
    def mount(self) -> str:
        return f"/data/{self.name}"


@dataclass(frozen=True)
class ProjectConfig:
    root: Path
    file: Path
    prefix: str  # "tool.harness" in pyproject.toml, "" in harness.toml
    name: str
    base: str
    lock: str
    command: tuple[str, ...]
    requirements: str | None = None
    params_file: str | None = None
    defaults_file: str | None = None
    data: tuple[DataSource, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    threads: int = 1
    build_network: str = "none"
    limits: dict[str, LimitValue] = field(default_factory=dict)  # as set here; unset ones get defaults at run time
    remote: str | None = None  # where `harness push` sends runs; not recorded (a run does not depend on it)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file.name,
            "name": self.name,
            "base": self.base,
            "lock": self.lock,
            "command": list(self.command),
            "requirements": self.requirements,
            "params_file": self.params_file,
            "defaults_file": self.defaults_file,
            "data": {d.name: d.configured for d in self.data},
            "params": self.params,
            "env": self.env,
            "paths": self.paths,
            "metrics": list(self.metrics),
            "threads": self.threads,
            "build_network": self.build_network,
            "limits": self.limits,
        }


def find_config_file(start: Path) -> Path:
    """The nearest harness.toml, or pyproject.toml with a [tool.harness] table, from ``start`` upwards."""
    for directory in (start, *start.parents):
        for name in CONFIG_FILES:
            candidate = directory / name
            if candidate.is_file() and (name == "harness.toml" or _has_tool_harness(candidate)):
                return candidate
    raise ConfigError(
        f"no harness config found in {start} or any parent directory",
        "run `harness init` to write a starter [tool.harness] table (or a harness.toml)",
    )


def project_layout(project_dir: Path) -> Layout:
    """Where the stores of the project containing ``project_dir`` are (the directory of its config file). Outside
    any project, the store ``HARNESS_HOME`` names, when it is set: a machine that only has what it pulled or
    imported (`harness pull`, `harness import`) shows, verifies and rebuilds those runs with no project at all."""
    try:
        file = find_config_file(project_dir.resolve())
    except ConfigError:
        home = os.environ.get(ENV_HOME)
        if not home:
            raise
        return Layout(project=project_dir.resolve(), store=Path(home).expanduser().resolve(), cache=cache_root())
    return Layout.for_project(file.parent)


def _has_tool_harness(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("tool"), dict) and "harness" in data["tool"]


def parse_config(text: str, file: Path, root: Path) -> ProjectConfig:
    """Parse config text (from the working tree or from a commit) that lives at ``file`` in ``root``."""
    where = file.name
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}", "fix the syntax at the position given") from None
    if file.name == "pyproject.toml":
        prefix = "tool.harness"
        table = document.get("tool", {}).get("harness")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: no [tool.harness] table", "run `harness init` to add one")
    else:
        prefix = ""
        table = document

    def path_of(key: str) -> str:
        return f"{where}: {prefix}.{key}" if prefix else f"{where}: {key}"

    for key, value in table.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"{path_of(key)}: unknown key",
                hint + "known keys: " + ", ".join(KEYS),
            )
        types, description = KEYS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("table" if t is dict else "list" if t is list else t.__name__ for t in types)
            raise ConfigError(
                f"{path_of(key)}: expected {expected}, got {type(value).__name__} {value!r}",
                f"{key} is {description}",
            )
    for required in ("base", "lock", "command"):
        if required not in table:
            raise ConfigError(f"{path_of(required)}: missing", f"{required} is {KEYS[required][1]}")

    command = _command(table["command"], path_of("command"))
    data = tuple(_data_sources(table.get("data", {}), root, path_of("data")))
    env = table.get("env", {})
    for env_key, env_value in env.items():
        if not isinstance(env_value, str | int | float) or isinstance(env_value, bool):
            raise ConfigError(f"{path_of('env')}.{env_key}: expected a string, got {env_value!r}")
    threads = int(table.get("threads", 1))
    if threads < 1:
        raise ConfigError(f"{path_of('threads')}: must be at least 1, got {threads}")
    if threads > (cpus := host_cpus()):
        raise ConfigError(
            f"{path_of('threads')}: {threads} is more than the {cpus} CPUs of this machine",
            f"set threads to {cpus} or fewer: more threads than CPUs only compete for them",
        )
    build_network = table.get("build_network", "none")
    if build_network not in BUILD_NETWORKS:
        raise ConfigError(
            f"{path_of('build_network')}: {build_network!r} is not one of {', '.join(BUILD_NETWORKS)}",
            "none: RUN steps have no network, as every container harness runs; host: the host's network; bridge: "
            "the engine's default network, as a plain `docker build` has",
        )
    limits = parse_limits_table(table.get("limits", {}), path_of("limits"))
    metrics = table.get("metrics", [])
    for item in metrics:
        if not isinstance(item, str):
            raise ConfigError(f"{path_of('metrics')}: expected paths in the outputs, got {item!r}")
        _relative(item, path_of("metrics"))
    for key in ("lock", "requirements", "params_file", "defaults_file"):
        if key in table:
            _relative(table[key], path_of(key))
    if "defaults_file" in table and table.get("params_file") == table["defaults_file"]:
        raise ConfigError(
            f"{path_of('defaults_file')}: {table['defaults_file']!r} is also the params_file",
            "a params_file holds named configs (-c NAME), a defaults_file the params themselves: "
            "give each its own file, or drop one of the keys",
        )
    return ProjectConfig(
        root=root,
        file=file,
        prefix=prefix,
        name=str(table.get("name") or root.name),
        base=table["base"],
        lock=table["lock"],
        command=command,
        requirements=table.get("requirements"),
        params_file=table.get("params_file"),
        defaults_file=table.get("defaults_file"),
        data=data,
        params=dict(table.get("params", {})),
        env={k: str(v) for k, v in env.items()},
        paths=check_paths(table.get("paths", {}), path_of("paths")),
        metrics=tuple(metrics),
        threads=threads,
        build_network=build_network,
        limits=limits,
        remote=table.get("remote"),
    )


def host_cpus() -> int:
    """The machine's CPUs, as the record's ``host.cpus`` counts them: the container gets no cpuset, so it can use
    them all whatever this process's own affinity (``taskset``) is."""
    return os.cpu_count() or 1


def load_config(start: Path) -> ProjectConfig:
    file = find_config_file(start)
    return parse_config(file.read_text(encoding="utf-8"), file, file.parent)


def _command(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        # Split once, here, and record the list: the command is never re-split by a shell later.
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot split {value!r}: {exc}", "write it as a list of strings") from None
    else:
        argv = value
    if not argv or not all(isinstance(a, str) and a for a in argv):
        raise ConfigError(
            f"{where}: must be a non-empty list of strings, got {value!r}",
            'for example command = ["python", "train.py"]',
        )
    placeholders(argv, where)  # a malformed {placeholder} is named now, before anything runs
    return tuple(argv)


def _relative(value: str, where: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ConfigError(f"{where}: {value!r} must be a path inside the project", "use a path relative to it")
    return path


def _data_sources(table: Mapping[str, Any], root: Path, where: str) -> list[DataSource]:
    sources = []
    for name, value in table.items():
        if name in RESERVED_DATA_NAMES or "/" in name:
            raise ConfigError(f"{where}.{name}: not a usable name for /data/{name}", "use a plain name like 'train'")
        if not isinstance(value, str):
            raise ConfigError(
                f"{where}.{name}: expected a path string, got {type(value).__name__} {value!r}",
                f'for example {name} = "data/{name}"',
            )
        path = Path(value).expanduser()
        sources.append(DataSource(name=name, path=path if path.is_absolute() else root / path, configured=value))
    return sources


def describe_command(argv: tuple[str, ...] | list[str]) -> str:
    return shlex.join(argv)
