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
from harness.project.importers import Imported, import_project


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


def _imported_table(imported: Imported, requirements: str | None) -> Table:
    """The config written from an MLproject or a dvc.yaml, every key as the starter explains it."""
    table = tomlkit.table()
    table.add(tomlkit.comment(f"harness: reproducible runs, written from {imported.source}. Keys: harness's README."))
    for key in ("name", "base"):
        if key in imported.table:
            table.add(key, imported.table[key])
    table.add("lock", "harness.lock")
    if requirements:
        table.add("requirements", requirements)
    table.add(tomlkit.comment("{name} is the param's value; '{{' and '}}' are literal braces."))
    table.add("command", imported.table["command"])
    if "defaults_file" in imported.table:
        table.add(
            tomlkit.comment("Top-level keys of this YAML are the default params (DVC's layout); -p a.b=1 over it.")
        )
        table.add("defaults_file", imported.table["defaults_file"])
    if "metrics" in imported.table:
        table.add(tomlkit.comment("Output files read as the run's metrics."))
        table.add("metrics", imported.table["metrics"])
    for key, comment in (
        ("data", "Snapshotted by content, mounted read-only at /data/<name>."),
        ("paths", "Paths in /code that lead to the data and the outputs, as the stage's code expects them."),
    ):
        if imported.table.get(key):
            sub = tomlkit.table()
            sub.add(tomlkit.comment(comment))
            for name, value in imported.table[key].items():
                sub.add(name, value)
            table.add(key, sub)
    params = tomlkit.table()
    for note in imported.params_comments:
        params.add(tomlkit.comment(note))
    for name, value in imported.table.get("params", {}).items():
        params.add(name, value)
    table.add("params", params)
    return table


def init_project(
    project: Path, standalone: bool = False, source: Path | None = None, stage: str | None = None
) -> list[str]:
    """Write the starter config, or one made from ``source`` (an MLproject or a dvc.yaml, ``stage`` naming the
    DVC stage); returns lines describing what was done."""
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
    imported = import_project(source, stage) if source is not None else None
    make = (lambda _name: _imported_table(imported, _requirements(project, imported, done))) if imported else _starter
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
        tool.append("harness", make(name))
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
        for key, value in make(name).value.body:
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
    if imported is not None:
        done += [f"note: {note}" for note in imported.notes]
        done.append("next: check the config, run `harness lock`, commit, then `harness run --commit HEAD`")
        return done
    done.append(
        "next: edit the command and data, write requirements.txt, run `harness lock`, commit, "
        "then `harness run --commit HEAD`"
    )
    return done


def _requirements(project: Path, imported: Imported, done: list[str]) -> str | None:
    """Where the imported requirements are: requirements.txt as it is, or written from the env file's
    packages (to requirements.txt, or beside it when one with other contents exists)."""
    existing = project / "requirements.txt"
    if imported.requirements is None:
        return "requirements.txt" if existing.is_file() else None
    text = "".join(f"{line}\n" for line in imported.requirements)
    content = f"# from {imported.source}: what `harness lock` resolves\n" + text
    target = existing
    if existing.is_file() and existing.read_text(encoding="utf-8") not in (text, content):
        target = project / "requirements-harness.txt"
    if not target.is_file() or target.read_text(encoding="utf-8") not in (text, content):
        write_text_atomic(target, content)
        done.append(f"wrote {target} ({len(imported.requirements)} requirements)")
    return target.name


def _keeps_lines(old: str, new: str) -> bool:
    new_lines = new.splitlines()
    pos = 0
    for line in old.splitlines():
        try:
            pos = new_lines.index(line, pos) + 1
        except ValueError:
            return False
    return True
