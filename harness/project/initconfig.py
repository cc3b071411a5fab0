"""`harness init`: a commented starter config, written with tomlkit so every existing line stays intact."""

from __future__ import annotations

import re
from pathlib import Path

import tomlkit
from tomlkit.items import Table

from harness.errors import ConfigError
from harness.files import write_text_atomic
from harness.paths import STORE_DIRNAME
from harness.project.config import find_config_file


def _starter(name: str) -> Table:
    table = tomlkit.table()
    table.add(tomlkit.comment("harness: reproducible runs. Every key is explained in harness's README."))
    table.add(tomlkit.comment("A short name for runs of this project."))
    table.add("name", name)
    table.add(tomlkit.comment("Base image: a recipe under images/ ('bookworm' = Debian 12 with Python 3.11)."))
    table.add("base", "bookworm")
    table.add(tomlkit.comment("Hash-pinned wheels for the image; `harness lock` writes it from `requirements`."))
    table.add("lock", "harness.lock")
    table.add("requirements", "requirements.txt")
    table.add(tomlkit.comment("The entry point as an argv list; it runs in /code, the committed code, read-only."))
    table.add(tomlkit.comment("Write results to /outputs; a metrics.json there becomes the run's metrics."))
    table.add("command", ["python", "main.py"])
    table.add(tomlkit.comment("Named param configs (YAML mapping of name -> params), selected with -c NAME."))
    table.add(tomlkit.comment('params_file = "params.yaml"'))
    data = tomlkit.table()
    data.add(tomlkit.comment('name = "path": snapshotted by content, mounted read-only at /data/<name>'))
    data.add(tomlkit.comment('train = "data/train.csv"'))
    params = tomlkit.table()
    params.add(tomlkit.comment("Defaults; the code gets them as /harness/params.json and HARNESS_PARAM_<KEY>."))
    params.add(tomlkit.comment("seed = 0"))
    table.add(tomlkit.nl())
    table.add("data", data)
    table.add("params", params)
    return table


def init_project(project: Path, standalone: bool = False) -> list[str]:
    """Write the starter config; returns lines describing what was done."""
    if not project.is_dir():
        raise ConfigError(f"{project} is not a directory")
    try:
        existing = find_config_file(project)
    except ConfigError:
        existing = None
    if existing is not None and existing.parent == project:
        raise ConfigError(f"{existing} already has a harness config", "edit it; nothing was changed")
    done: list[str] = []
    pyproject = project / "pyproject.toml"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", project.name) or "project"
    if pyproject.is_file() and not standalone:
        text = pyproject.read_text(encoding="utf-8")
        try:
            doc = tomlkit.parse(text)
        except Exception as exc:
            raise ConfigError(f"{pyproject}: not valid TOML ({exc}); nothing was changed") from None
        tool = doc.get("tool")
        if tool is None:
            tool = tomlkit.table(is_super_table=True)
            doc.append("tool", tool)
        tool.append("harness", _starter(name))
        new_text = tomlkit.dumps(doc)
        if not new_text.startswith(text.rstrip("\n")) and not _keeps_lines(text, new_text):
            raise ConfigError(
                f"{pyproject}: could not add [tool.harness] without changing existing lines",
                "write a harness.toml instead: `harness init --harness-toml`",
            )
        write_text_atomic(pyproject, new_text)
        done.append(f"added a [tool.harness] table to {pyproject}")
    else:
        target = project / "harness.toml"
        doc = tomlkit.document()
        for key, value in _starter(name).value.body:
            if key is None:
                doc.add(value)
            else:
                doc.add(key, value)
        write_text_atomic(target, tomlkit.dumps(doc))
        done.append(f"wrote {target}")
    gitignore = project / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.is_file() else []
    if not any(line.strip().rstrip("/") in (STORE_DIRNAME, "/" + STORE_DIRNAME) for line in lines):
        with open(gitignore, "a", encoding="utf-8") as fh:
            if lines and not gitignore.read_text(encoding="utf-8").endswith("\n"):
                fh.write("\n")
            fh.write(f"# harness's store: runs, data and output objects\n{STORE_DIRNAME}/\n")
        done.append(f"added {STORE_DIRNAME}/ to {gitignore}")
    done.append(
        "next: edit the command and data, write requirements.txt, run `harness lock`, commit, "
        "then `harness run --commit HEAD`"
    )
    return done


def _keeps_lines(old: str, new: str) -> bool:
    new_lines = new.splitlines()
    pos = 0
    for line in old.splitlines():
        try:
            pos = new_lines.index(line, pos) + 1
        except ValueError:
            return False
    return True
