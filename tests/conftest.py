"""Shared fixtures. Tests that need Docker use the real engine; the environment image is built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.docker.engine import connect
from harness.docker.interface import Engine
from harness.env.environment import Environment
from harness.env.images import ensure_environment
from harness.env.lockfile import Lock, LockedPackage, requirements_digest
from harness.env.recipe import load_recipe
from harness.errors import EngineUnavailable
from harness.paths import ENV_CACHE, Layout
from tests.registry import Registry

SIX = LockedPackage(
    name="six",
    version="1.16.0",
    filename="six-1.16.0-py2.py3-none-any.whl",
    sha256="8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
)


@pytest.fixture(scope="session")
def harness_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh cache for the session, also seen by harness subprocesses (HARNESS_CACHE), restored afterwards."""
    cache = tmp_path_factory.mktemp("harness-cache")
    saved = os.environ.get(ENV_CACHE)
    os.environ[ENV_CACHE] = str(cache)
    try:
        yield cache
    finally:
        if saved is None:
            os.environ.pop(ENV_CACHE, None)
        else:
            os.environ[ENV_CACHE] = saved


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A loopback docker-registry of the test's own, plain http, stopped after it."""
    reg = Registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture()
def umask_022() -> Iterator[None]:
    """The umask most systems give users, whatever this process was started with."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The real Docker engine. Missing engine = failed test, not a skip: these paths must be tested for real."""
    try:
        return connect()
    except EngineUnavailable as exc:
        pytest.fail(f"{exc.message}; {exc.hint}", pytrace=False)


@pytest.fixture(scope="session")
def tiny_lock() -> Lock:
    """six, locked by this session's own requirement (tests/projects.py: session_owned), so the session's image id
    is its own and the tests that remove it disturb no other process on the engine."""
    from tests.projects import session_owned

    requirements = (session_owned("six==1.16.0"),)
    return Lock(
        python="3.11",
        platform="manylinux_2_36_x86_64",
        requirements=requirements,
        requirements_digest=requirements_digest(requirements),
        packages=(SIX,),
    )


@pytest.fixture(scope="session")
def env_layout(harness_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """Where the session's environment image lives: a scratch project over the session cache."""
    project = tmp_path_factory.mktemp("env-project")
    return Layout(project=project, store=project / ".harness", cache=harness_cache)


@pytest.fixture(scope="session")
def tiny_env(tiny_lock: Lock, env_layout: Layout, engine: Engine) -> Environment:
    """The default base + six, built once per session (about 30 s cold, mmdebstrap included) and then reused."""
    recipe = load_recipe("bookworm", env_layout.project)
    return ensure_environment(recipe, tiny_lock, env_layout, engine)


@pytest.fixture()
def probe_project(tmp_path: Path, tiny_env: Environment, tiny_lock: Lock) -> Path:
    """A committed git project (tests/projects.py PROBE_*) whose environment is the session's tiny_env."""
    from tests.projects import make_probe_project

    return make_probe_project(tmp_path / "probe", tiny_lock)
