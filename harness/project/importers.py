"""`harness init --from MLproject|dvc.yaml`: a harness config from the project files MLflow and DVC users have.

Read with PyYAML only: neither mlflow nor dvc is needed on the host. What cannot be carried over is said in notes
(a conda package with no wheel, a Python the bases do not have, a docker_env), never dropped silently.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import ConfigError

# Conda packages that are not Python distributions on PyPI (system libraries, toolchains, conda's own plumbing).
CONDA_ONLY = {
    "_libgcc_mutex", "_openmp_mutex", "blas", "ca-certificates", "cudatoolkit", "cudatoolkit-dev", "cudnn", "gcc",
    "gxx", "intel-openmp", "ld_impl_linux-64", "libblas", "libcblas", "libffi", "libgcc", "libgcc-ng", "libgfortran",
    "libgfortran-ng", "liblapack", "libstdcxx-ng", "libuuid", "make", "mkl", "mkl-service", "mkl_fft", "mkl_random",
    "nccl", "ncurses", "openblas", "openssl", "pytorch-cuda", "readline", "sqlite", "tk", "tzdata", "xz", "zlib",
}  # fmt: skip
CONDA_TO_PYPI = {"pytorch": "torch", "py-xgboost": "xgboost", "matplotlib-base": "matplotlib", "pytables": "tables"}
NOT_REQUIREMENTS = {"python", "pip", "setuptools", "wheel"}
CODE_SUFFIXES = {".py", ".pyx", ".sh", ".r", ".jl", ".ipynb", ".sql", ".toml", ".cfg", ".ini", ".yaml", ".yml"}
BASES = {"3.11": "bookworm", "3.13": "trixie"}


@dataclass
class Imported:
    """What to write: the config's keys (in order), the requirements' lines (None: keep ``requirements``'s file
    as it is), and notes for the user."""

    source: str
    table: dict[str, Any]
    requirements: list[str] | None = None
    params_comments: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def import_project(path: Path, stage: str | None = None) -> Imported:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file", "name an MLproject or a dvc.yaml: harness init --from MLproject")
    if path.name in ("dvc.yaml", "dvc.yml"):
        return from_dvc(path, stage)
    if path.name.lower().startswith("mlproject"):
        if stage is not None:
            raise ConfigError("--stage is for dvc.yaml", "an MLproject's entry point is chosen with --entry-point")
        return from_mlproject(path)
    raise ConfigError(f"{path}: not an MLproject or a dvc.yaml", "harness init --from MLproject (or dvc.yaml)")


def from_mlproject(path: Path, entry_point: str = "main") -> Imported:
    doc = _yaml_mapping(path)
    entry_points = doc.get("entry_points") or {}
    if entry_point not in entry_points:
        raise ConfigError(
            f"{path.name}: no entry point {entry_point!r}", f"entry points: {', '.join(entry_points) or 'none'}"
        )
    entry = entry_points[entry_point] or {}
    if not isinstance(entry.get("command"), str):
        raise ConfigError(f"{path.name}: entry_points.{entry_point}.command: missing or not a string")
    imported = Imported(source=path.name, table={})
    if doc.get("name"):
        imported.table["name"] = str(doc["name"])
    params: dict[str, Any] = {}
    for name, spec in (entry.get("parameters") or {}).items():
        kind, default = (spec, None) if isinstance(spec, str) else (spec.get("type", "string"), spec.get("default"))
        if default is None:
            imported.params_comments.append(f"{name} ({kind}): no default in {path.name}; pass -p {name}=VALUE")
            continue
        params[str(name)] = _typed(default, str(kind))
    python: str | None = None
    root = path.parent
    env_file = doc.get("python_env") or doc.get("conda_env")
    if doc.get("docker_env"):
        imported.notes.append(
            f"{path.name} runs in docker_env image {doc['docker_env'].get('image')!r}: harness builds its own image; "
            'set base = "Dockerfile" (a Dockerfile in the project) or a digest-pinned image (registry/x@sha256:...)'
        )
    if env_file is None:
        env_file = next((n for n in ("python_env.yaml", "conda.yaml") if (root / n).is_file()), None)
    if env_file is not None:
        env_path = root / str(env_file)
        if "python_env" in doc or env_path.name.startswith("python_env"):
            python = _python_env(env_path, imported)
        else:
            python = _conda_env(env_path, imported)
    imported.table["base"] = _base(python, imported)
    command = entry["command"].strip()
    imported.table["command"] = _command(command, imported)
    imported.table["params"] = params
    return imported


def from_dvc(path: Path, stage: str | None) -> Imported:
    doc = _yaml_mapping(path)
    stages = doc.get("stages") or {}
    if not isinstance(stages, dict) or not stages:
        raise ConfigError(f"{path.name}: no stages")
    if stage is None:
        if len(stages) > 1:
            raise ConfigError(
                f"{path.name} has {len(stages)} stages: {', '.join(stages)}",
                "choose the one harness runs: harness init --from dvc.yaml --stage NAME",
            )
        stage = next(iter(stages))
    if stage not in stages:
        raise ConfigError(f"{path.name}: no stage {stage!r}", f"stages: {', '.join(stages)}")
    spec = stages[stage] or {}
    if "foreach" in spec or "matrix" in spec:
        raise ConfigError(f"{path.name}: stage {stage!r} uses foreach/matrix", "write one stage out, or sweep with -p")
    root = path.parent
    imported = Imported(source=f"{path.name} stage {stage}", table={"name": str(stage)})
    imported.table["base"] = "bookworm"
    cmd = spec.get("cmd")
    commands = [cmd] if isinstance(cmd, str) else list(cmd or [])
    if not commands:
        raise ConfigError(f"{path.name}: stages.{stage}.cmd: missing")
    # DVC's ${name} templating is a harness placeholder; a lone brace is a literal one.
    converted = [_dvc_template(c) for c in commands]
    if len(converted) > 1:
        imported.table["command"] = ["sh", "-c", " && ".join(converted)]
        imported.notes.append("the stage's commands run one after another in `sh -c`")
    else:
        imported.table["command"] = _command(converted[0], imported)
    params_files = {"params.yaml"}
    for item in spec.get("params") or []:
        if isinstance(item, dict):
            params_files |= {str(k) for k in item}
    if (root / "params.yaml").is_file():
        imported.table["defaults_file"] = "params.yaml"
    for other in sorted(params_files - {"params.yaml"}):
        imported.notes.append(f"params from {other} are not carried over: harness reads one defaults file")
    produced = {_out_path(o) for s in stages.values() for o in (s or {}).get("outs") or []}
    data: dict[str, str] = {}
    paths: dict[str, str] = {}
    for dep in spec.get("deps") or []:
        rel = str(dep).rstrip("/")
        if _is_code(root / rel):
            continue  # code: committed, it is in /code
        if rel in produced:
            imported.notes.append(f"{rel} is another stage's output: run that stage first and add its output as data")
            continue
        name = _unique(PurePosixPath(rel).name, data)
        data[name] = rel
        paths[rel] = f"/data/{name}"
    outputs = [_out_path(o) for key in ("outs", "metrics", "plots") for o in spec.get(key) or []]
    for rel in outputs:
        is_dir = (root / rel).is_dir() or not PurePosixPath(rel).suffix
        paths[rel] = f"/outputs/{rel}" + ("/" if is_dir else "")
    metrics = [_out_path(o) for o in spec.get("metrics") or []]
    if data:
        imported.table["data"] = data
    if paths:
        imported.table["paths"] = paths
    if metrics:
        imported.table["metrics"] = metrics
    imported.table["params"] = {}
    if (root / "requirements.txt").is_file():
        imported.requirements = None
    else:
        imported.requirements = []
        imported.notes.append("no requirements.txt: list the stage's packages in it, then `harness lock`")
    return imported


def _is_code(path: Path) -> bool:
    """A source file, or a directory holding one (``src/``): committed, so in /code, not data."""
    if path.is_dir():
        return any(p.suffix.lower() in CODE_SUFFIXES for _, p in zip(range(10_000), path.rglob("*"), strict=False))
    return path.suffix.lower() in CODE_SUFFIXES


def _python_env(path: Path, imported: Imported) -> str | None:
    doc = _yaml_mapping(path)
    deps = [str(d) for d in doc.get("dependencies") or []]
    if deps == ["-r requirements.txt"] and (path.parent / "requirements.txt").is_file():
        imported.requirements = None
    else:
        imported.requirements = deps
    return str(doc["python"]) if doc.get("python") else None


def _conda_env(path: Path, imported: Imported) -> str | None:
    doc = _yaml_mapping(path)
    requirements: list[str] = []
    conda_only: list[str] = []
    python = None
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict):
            requirements += [str(p) for p in dep.get("pip") or []]
            continue
        name, spec = _conda_spec(str(dep))
        if name == "python":
            python = spec.lstrip("=<>!~ ") or None
        elif name in NOT_REQUIREMENTS:
            continue
        elif name in CONDA_ONLY or name.startswith(("r-", "cuda-")):
            conda_only.append(str(dep))
        else:
            requirements.append(CONDA_TO_PYPI.get(name, name) + spec)
    imported.requirements = requirements
    if conda_only:
        imported.notes.append(
            f"not in the requirements: conda packages with no wheel on PyPI ({', '.join(conda_only)}). Python "
            "packages bring their own libraries in their wheels (numpy its BLAS, torch its CUDA); a system library "
            'goes in the base: base = "Dockerfile" with an apt-get install'
        )
    imported.notes.append(
        f"conda packages of {path.name} were moved to the requirements under their PyPI names; `harness lock` "
        "names any that has no wheel for the image"
    )
    return python


def _conda_spec(dep: str) -> tuple[str, str]:
    """``conda-forge::numpy=1.21=py39h_0`` -> ("numpy", "==1.21.*"); ``numpy>=1.2`` -> ("numpy", ">=1.2")."""
    dep = dep.split("::", 1)[-1].strip()
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", dep)
    if not match:
        return dep, ""
    name, rest = match.group(1).lower(), match.group(2).strip()
    if not rest:
        return name, ""
    if rest[0] in "<>!~" or rest.startswith("=="):
        return name, rest.split(" ")[0]
    version = rest.lstrip("= ").split("=")[0].split(" ")[0]  # drop a build string
    if not version:
        return name, ""
    return name, f"=={version}" if version.count(".") >= 2 or "*" in version else f"=={version}.*"


def _typed(value: Any, kind: str) -> Any:
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
    except (TypeError, ValueError):
        pass
    if kind in ("string", "str", "path", "uri") or not isinstance(value, bool | int | float):
        return str(value)
    return value


def _base(python: str | None, imported: Imported) -> str:
    if python is None:
        return "bookworm"
    minor = ".".join(python.split(".")[:2])
    if minor in BASES:
        return BASES[minor]
    imported.notes.append(
        f"{imported.source} asks for Python {python}; the built-in bases have 3.11 (bookworm, chosen) and 3.13 "
        "(trixie); a Dockerfile base can bring another"
    )
    return "bookworm"


SHELL_SYNTAX = re.compile(r"&&|\|\||[|;<>`$]")


def _command(command: str, imported: Imported) -> str | list[str]:
    if SHELL_SYNTAX.search(command):
        imported.notes.append("the command uses shell syntax: it runs in `sh -c` (a {placeholder}'s value unquoted)")
        return ["sh", "-c", command]
    try:
        shlex.split(command)
    except ValueError:
        return ["sh", "-c", command]
    return command


def _dvc_template(cmd: str) -> str:
    """``python train.py --lr ${train.lr}`` -> ``python train.py --lr {train.lr}``; other braces doubled."""
    parts = re.split(r"(\$\{[^{}]+\})", str(cmd))
    return "".join(
        "{" + p[2:-1].strip() + "}" if p.startswith("${") else p.replace("{", "{{").replace("}", "}}") for p in parts
    )


def _out_path(out: Any) -> str:
    return str(next(iter(out)) if isinstance(out, dict) else out).rstrip("/")


def _unique(name: str, taken: dict[str, str]) -> str:
    name = name if name not in ("", ".", "..") else "data"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _yaml_mapping(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a YAML mapping")
    return doc
