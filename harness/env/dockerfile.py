"""A Dockerfile as a base: which value names one, what it takes from the build context, and its key.

``base = "Dockerfile.base"``: a base whose file name is ``Dockerfile``, starts with ``Dockerfile.`` or ends with
``.Dockerfile``/``.dockerfile`` is a Dockerfile, by its path relative to the project. The build context is its
directory, and harness sends exactly the Dockerfile and the files its COPY/ADD instructions take from there
(``--from=`` takes from a stage or an image, a URL from the network), read from the commit being run:

    key = sha256({format, sha256(Dockerfile bytes), sha256([path, mode, sha256] of each context file)})

so a commit that changes other files keeps the key (and the archived image, dockerfilebase.py), and one that
changes a copied file, or the Dockerfile, gets a new one. Sources are literal files or directories, or globs with
``*`` and ``?`` (Go's filepath.Match, as docker's: neither crosses a ``/``). Refused, naming the line: a source
outside the Dockerfile's directory, one that names nothing, a variable (``$X``: ARG and ENV are not expanded
here, so the files could not be known), a ``[...]`` class, a heredoc, a symlink named as a source, a submodule,
a ``.dockerignore`` next to a directory or glob source (it is not applied), and flags that change what is taken.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from harness.digests import sha256_bytes, sha256_json
from harness.errors import CodeError, ConfigError, EnvironmentBuildError
from harness.project.projectfiles import EXECUTABLE, FILE, SUBMODULE, SYMLINK, ProjectFiles

DOCKERFILE_FORMAT = "harness.dockerfile/1"  # bump when what goes into the key or the context changes
CONTEXT_MTIME = 315532800  # 1980-01-01: context files depend on their bytes and mode alone, as code archives do
_NAME_RULE = "a base whose file name is Dockerfile, starts with Dockerfile. or ends with .Dockerfile or .dockerfile"
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_HARMLESS_FLAGS = {"chown", "chmod", "link"}  # change how files land, not which files are taken

Refuse = Callable[..., ConfigError]  # (problem, hint="") -> the error naming the instruction


def is_dockerfile(base: str) -> bool:
    """Whether the configured base names a Dockerfile by the file-name rule (a path relative to the project)."""
    name = base.rstrip("/").rsplit("/", 1)[-1]
    return name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith((".Dockerfile", ".dockerfile"))


def dockerfile_key(dockerfile_digest: str, context_digest: str) -> str:
    """What decides whether the image is built again: the Dockerfile's bytes and the context's files."""
    return sha256_json({"format": DOCKERFILE_FORMAT, "dockerfile": dockerfile_digest, "context": context_digest})


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts in the Dockerfile, 1-based
    keyword: str  # upper case
    text: str  # the whole instruction, continuation lines joined

    def where(self, path: str) -> str:
        return f"{path} line {self.line} ({_short(self.text)})"


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile in order: comments dropped, continuation lines joined (docker's rules,
    with the ``# escape=`` directive honoured)."""
    lines = text.splitlines()
    escape = "\\"
    for line in lines:  # parser directives: "# key=value" lines at the very top
        match = re.fullmatch(r"#\s*([A-Za-z]+)\s*=\s*(\S+)\s*", line)
        if match is None:
            break
        if match[1].lower() == "escape":
            escape = match[2]
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank and comment lines, also between continued ones
        if not parts:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            parts.append(body[: -len(escape)])
            continue
        parts.append(body)
        joined = "".join(parts).strip()
        parts = []
        found.append(Instruction(start, joined.split(None, 1)[0].upper(), joined))
    if parts:
        joined = "".join(parts).strip()
        found.append(Instruction(start, joined.split(None, 1)[0].upper(), joined))
    return found


@dataclass(frozen=True)
class ContextFile:
    path: str  # relative to the build context (the Dockerfile's directory), posix
    mode: str  # git's: 100644, 100755, 120000
    sha256: str  # of the bytes (a symlink's: of its target)
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "mode": self.mode, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class DockerfileSource:
    """A Dockerfile read from the project, with the context files its COPY/ADD take, hashed."""

    path: str  # relative to the project
    content: bytes  # the Dockerfile as committed
    digest: str  # "sha256:<hex>" of the Dockerfile's bytes
    files: tuple[ContextFile, ...]  # sorted by path; what COPY/ADD take from the context
    steps: tuple[Instruction, ...]
    files_from: ProjectFiles = field(compare=False, repr=False)
    network: str = "none"  # what RUN steps get (config build_network): how it is built, not what decides it

    @property
    def directory(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def name(self) -> str:
        """The Dockerfile's path inside the build context."""
        return posixpath.basename(self.path)

    @property
    def context_digest(self) -> str:
        return "sha256:" + sha256_json([f.to_dict() for f in self.files])

    @property
    def key(self) -> str:
        return dockerfile_key(self.digest, self.context_digest)

    def write_context(self, dest: IO[bytes]) -> None:
        """The build context as a tar: the Dockerfile and the selected files, read again and checked against the
        digests the key was made of (the working tree can change in between; a commit cannot)."""
        project_paths = [_join(self.directory, f.path) for f in self.files]
        dirs = sorted({d for f in self.files for d in _parents(f.path)})
        with tarfile.open(fileobj=dest, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in dirs:
                tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755))
            names = {f.path for f in self.files}
            if self.name not in names:
                size = len(self.content)
                tar.addfile(_info(self.name, tarfile.REGTYPE, 0o644, size), io.BytesIO(self.content))
            for entry, (_path, data) in zip(self.files, self.files_from.read(project_paths), strict=True):
                if sha256_bytes(data) != entry.sha256:
                    raise EnvironmentBuildError(
                        f"{_join(self.directory, entry.path)} changed in {self.files_from.where} while the base "
                        "was being built; nothing was built",
                        hint="build again once the working tree is still",
                    )
                if entry.mode == SYMLINK:
                    info = _info(entry.path, tarfile.SYMTYPE, 0o777)
                    info.linkname = data.decode("utf-8", "surrogateescape")
                    tar.addfile(info)
                else:
                    mode = 0o755 if entry.mode == EXECUTABLE else 0o644
                    tar.addfile(_info(entry.path, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def step(self, number: int) -> Instruction | None:
        """The instruction the classic builder's "Step N/M" is (1-based), if it is one of the Dockerfile's."""
        return self.steps[number - 1] if 0 < number <= len(self.steps) else None


def load_dockerfile(base: str, source: ProjectFiles, network: str = "none") -> DockerfileSource:
    """The Dockerfile ``base`` names and the context files it takes, read from ``source``; ``network`` is what
    its RUN steps will get."""
    path = posixpath.normpath(base)
    if base.startswith("/") or path == ".." or path.startswith("../"):
        raise ConfigError(
            f"tool.harness.base: {base!r} is outside the project; {_NAME_RULE} is a Dockerfile path relative to the "
            "project",
            hint="move the Dockerfile into the project and commit it",
        )
    directory = posixpath.dirname(path)
    try:
        listing = {_relative(p, directory): mode for p, mode in source.listing(directory).items()}
    except CodeError as exc:
        raise ConfigError(f"tool.harness.base: cannot list {directory or 'the project'}: {exc.message}") from None
    name = posixpath.basename(path)
    if listing.get(name) not in (FILE, EXECUTABLE):
        what = "a symlink or submodule" if name in listing else "not"
        raise ConfigError(
            f"tool.harness.base: {path} is {what} in {source.where} ({_NAME_RULE} is a Dockerfile path relative to "
            "the project)",
            hint=f"commit it (`git add {path} && git commit`): harness builds only what is committed; or name a "
            "recipe (images/<name>.toml) or a digest-pinned image",
        )
    data = dict(source.read([path]))[path]
    steps = tuple(instructions(data.decode("utf-8", "replace")))
    if not steps or steps[0].keyword not in ("FROM", "ARG"):
        found = _short(steps[0].text) if steps else "no instruction"
        raise ConfigError(f"{path}: a Dockerfile starts with FROM (or ARG); found {found}")
    selected: dict[str, str] = {}
    for step in steps:
        if step.keyword in ("COPY", "ADD"):
            for rel in _sources(step, path, listing, source.where):
                selected[rel] = listing[rel]
    files = []
    ordered = sorted(selected)
    for rel, (_path, content) in zip(ordered, source.read([_join(directory, r) for r in ordered]), strict=True):
        files.append(ContextFile(rel, selected[rel], sha256_bytes(content), len(content)))
    return DockerfileSource(path, data, "sha256:" + sha256_bytes(data), tuple(files), steps, source, network)


def _sources(step: Instruction, path: str, listing: dict[str, str], where: str) -> list[str]:
    """The context files a COPY or ADD takes, as paths relative to the context."""

    def refuse(problem: str, hint: str = "") -> ConfigError:
        return ConfigError(f"{step.where(path)}: {problem}", hint=hint or None)

    rest = (step.text.split(None, 1) + [""])[1]
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name.lower()] = value
        rest = rest.lstrip()
    if "from" in flags:
        return []  # from a build stage or an image, not from the context
    unknown = sorted(set(flags) - _HARMLESS_FLAGS)
    if unknown:
        raise refuse(f"--{unknown[0]} is not supported: harness must know exactly which files the build takes")
    words = _words(rest, refuse)
    if len(words) < 2:
        raise refuse(f"{step.keyword} needs a source and a destination")
    if any(w.startswith("<<") for w in words):
        raise refuse("heredocs are not supported (the classic builder has none): commit the file and COPY it")
    taken: list[str] = []
    for src in words[:-1]:
        if _URL_RE.match(src):
            if step.keyword == "ADD" and src.lower().startswith(("http://", "https://")):
                continue  # the engine downloads it itself; see the README on ADD <url>
            raise refuse(f"{src}: only ADD takes a URL, and only http(s)")
        if "$" in src:
            raise refuse(
                f"{src}: variables in COPY/ADD sources are not expanded by harness (ARG and ENV values are not "
                "known before the build), so the files it takes cannot be known",
                "write the path itself",
            )
        if "[" in src or "\\" in src:
            raise refuse(f"{src}: only * and ? are supported in source patterns")
        taken += _match(src, path, listing, where, refuse)
    return taken


def _words(rest: str, refuse: Refuse) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    try:
        return shlex.split(rest, comments=False, posix=True)
    except ValueError as exc:
        raise refuse(f"cannot split the arguments: {exc}") from None


def _match(src: str, path: str, listing: dict[str, str], where: str, refuse: Refuse) -> list[str]:
    directory = posixpath.dirname(path)
    rel = posixpath.normpath(src.lstrip("/") or ".")  # docker reads a leading / as the context's root
    if rel == ".." or rel.startswith("../"):
        outside = posixpath.normpath(posixpath.join(directory, rel))
        project = " and outside the project" if outside == ".." or outside.startswith("../") else ""
        raise refuse(
            f"{src} is outside the build context, the Dockerfile's directory {directory or '.'}/{project}",
            "move the Dockerfile up, or the file into its directory",
        )
    is_glob = any(c in rel for c in "*?")
    if ".dockerignore" in listing and (is_glob or rel not in listing):
        raise refuse(
            f"{src} takes a directory or a pattern, and harness does not apply .dockerignore: it sends exactly the "
            "files COPY/ADD name, from the commit (files git ignores are never in it)",
            "remove .dockerignore from the Dockerfile's directory, or name the files",
        )
    if is_glob:
        pattern = re.compile("/".join(_component(c) for c in rel.split("/")))
        depth = rel.count("/") + 1
        candidates = {p for f in listing for p in (f, *_parents(f)) if p.count("/") + 1 == depth}
        matched = sorted(p for p in candidates if pattern.fullmatch(p))
        if not matched:
            raise refuse(f"{src} matches no file in the build context", "commit the files it should take")
    else:
        matched = [rel]
    taken: list[str] = []
    for item in matched:
        if item in listing:
            if listing[item] in (SYMLINK, SUBMODULE):
                kind = "a symlink" if listing[item] == SYMLINK else "a submodule"
                raise refuse(f"{item} is {kind}: name the file or directory itself")
            taken.append(item)
            continue
        under = [f for f in listing if item == "." or f.startswith(item + "/")]
        if not under:
            raise refuse(
                f"{src} is not in the build context (the Dockerfile's directory {directory or '.'}/ in {where})",
                "commit it, or correct the path (relative to the Dockerfile's directory)",
            )
        submodules = [f for f in under if listing[f] == SUBMODULE]
        if submodules:
            raise refuse(f"{submodules[0]} is a submodule, whose files are not in the commit")
        taken += under
    return taken


def _component(glob: str) -> str:
    return "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in glob)


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _relative(project_path: str, directory: str) -> str:
    return project_path[len(directory) + 1 :] if directory else project_path


def _join(directory: str, rel: str) -> str:
    return f"{directory}/{rel}" if directory else rel


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, CONTEXT_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
