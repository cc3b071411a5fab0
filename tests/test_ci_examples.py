"""The CI examples run as they are: each file's shell steps, in order, in a fresh clone of the bikes example, with the
variables the provider sets. Only what a provider's own machinery does is emulated: the `uses:` actions of GitHub
(the clone is the checkout, this venv is setup-python's Python, the cache is restored from this session's cache, and
an upload checks that the paths it names exist) and GitLab's cache and artifacts. So the examples cannot rot."""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.projects import cli_env, git, harness, make_bikes_repo, valid_record

CI = Path(__file__).resolve().parent.parent / "examples" / "ci"
README = CI.parent.parent / "README.md"
VENV = Path(sys.prefix)
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class Pipeline:
    """What a provider's runner gives the steps: a checkout, variables, and what the steps leave behind."""

    workspace: Path
    env: dict[str, str]
    log: list[str] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)

    def bash(self, script: str, name: str, options: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", *options, "-c", script],
            cwd=self.workspace,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        self.log.append(f"--- {name} (exit {done.returncode})\n{done.stdout}{done.stderr}")
        return done

    def output(self) -> str:
        return "\n".join(self.log)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, harness_cache: Path) -> Path:
    """The pushed repository: examples/bikes committed, locked for this session's own image, which is built into
    the session's cache here: what a first pipeline would have left in the CI cache."""
    assert Path(sys.base_prefix) != VENV, "these tests reuse the test virtualenv as the pipeline's harness"
    root = make_bikes_repo(tmp_path_factory.mktemp("ci-origin") / "bikes")
    built = harness(root, "env", "build")
    assert built.returncode == 0, built.stderr
    return root


def _clone(origin: Path, where: Path) -> tuple[Path, str]:
    checkout = where / "checkout"
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True, env=cli_env())
    return checkout, git(checkout, "rev-parse", "HEAD").strip()


def _base_env(home: Path) -> dict[str, str]:
    """A runner's environment: no harness variables of the test session, a home of its own."""
    env = cli_env()
    for name in ("HARNESS_CACHE", "HARNESS_HOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")
    return env


def _restore_cache(path: Path, cache: Path) -> None:
    """The cache action restores a directory: here, this session's cache (wheels, base layers, image archives)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(cache, target_is_directory=True)


def _github_value(text: str, context: dict[str, str]) -> str:
    """A `${{ ... }}` expression of the few kinds the workflow's env uses; anything else fails the test."""

    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        assert expr in context, f"the test does not know GitHub's value of ${{{{ {expr} }}}}"
        return context[expr]

    return EXPRESSION.sub(value, text)


def _read_github_env(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        assert "<<" not in line.partition("=")[0], f"multi-line GITHUB_ENV values are not emulated: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line in GITHUB_ENV: {line}"
        found[key] = value
    path.write_text("")
    return found


def run_github(workflow: Path, origin: Path, tmp: Path, cache: Path) -> Pipeline:
    doc = yaml.safe_load(workflow.read_text())
    assert "push" in doc[True], "the workflow runs on push"  # PyYAML reads the key `on` as True
    [(job_name, job)] = doc["jobs"].items()
    assert job.get("defaults", {}).get("run", {}).get("shell") == "bash"
    checkout, sha = _clone(origin, tmp)
    runner_temp = tmp / "runner-temp"
    runner_temp.mkdir()
    github_env = runner_temp / "github_env"
    github_env.touch()
    env = _base_env(tmp / "home")
    env.update(
        CI="true",
        GITHUB_ACTIONS="true",
        GITHUB_SHA=sha,
        GITHUB_REF="refs/heads/main",
        GITHUB_REF_NAME="main",
        GITHUB_REPOSITORY="org/bikes",
        GITHUB_RUN_ID="7001",
        GITHUB_RUN_ATTEMPT="1",
        GITHUB_WORKFLOW=doc["name"],
        GITHUB_JOB=job_name,
        GITHUB_ACTOR="octocat",
        GITHUB_EVENT_NAME="push",
        GITHUB_SERVER_URL="https://github.com",
        GITHUB_WORKSPACE=str(checkout),
        GITHUB_ENV=str(github_env),
        GITHUB_OUTPUT=str(runner_temp / "github_output"),
        RUNNER_TEMP=str(runner_temp),
        RUNNER_OS="Linux",
    )
    # No registry variable is set here, so the push step must skip itself.
    context = {"vars.HARNESS_REMOTE": "", "github.actor": "octocat", "secrets.GITHUB_TOKEN": "not-a-token"}
    for key, value in job.get("env", {}).items():
        env[key] = _github_value(str(value), context)
    pipeline = Pipeline(checkout, env)
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@"), "the checkout comes first"
    for step in steps[1:]:
        assert step.get("if", "always()") == "always()", f"condition not emulated: {step['if']}"
        action = step.get("uses", "").partition("@")[0]
        if action == "actions/setup-python":
            env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"  # this venv's Python, harness already in it
        elif action == "actions/cache":
            assert step["with"]["key"] and "restore-keys" in step["with"]
            for line in step["with"]["path"].splitlines():
                _restore_cache(Path(line.strip().replace("~", env["HOME"], 1)), cache)
        elif action == "actions/upload-artifact":
            for line in step["with"]["path"].splitlines():
                pipeline.artifacts.append(checkout / line.strip())
        elif action:
            pytest.fail(f"{workflow.name}: no emulation of {step['uses']}")
        else:
            script = step["run"]
            assert not EXPRESSION.search(script), "run steps read variables, not expressions, so they run anywhere"
            done = pipeline.bash(script, step.get("name", script), ("-eo", "pipefail"))
            assert done.returncode == 0, pipeline.output()
            env.update(_read_github_env(github_env))
    return pipeline


def run_gitlab(config: Path, origin: Path, tmp: Path, cache: Path) -> Pipeline:
    doc = yaml.safe_load(config.read_text())
    jobs = {name: job for name, job in doc.items() if isinstance(job, dict) and "script" in job}
    [(job_name, job)] = jobs.items()
    checkout, sha = _clone(origin, tmp)
    env = _base_env(tmp / "home")
    env.update(
        CI="true",
        GITLAB_CI="true",
        CI_COMMIT_SHA=sha,
        CI_COMMIT_REF_NAME="main",
        CI_COMMIT_REF_SLUG="main",
        CI_PROJECT_DIR=str(checkout),
        CI_PROJECT_PATH="org/bikes",
        CI_SERVER_URL="https://gitlab.example",
        CI_PIPELINE_ID="8001",
        CI_PIPELINE_URL="https://gitlab.example/org/bikes/-/pipelines/8001",
        CI_JOB_ID="9001",
        CI_JOB_NAME=job_name,
        CI_JOB_URL="https://gitlab.example/org/bikes/-/jobs/9001",
        CI_REGISTRY="registry.gitlab.example",
        CI_REGISTRY_IMAGE="registry.gitlab.example/org/bikes",
    )
    for key, value in {**doc.get("variables", {}), **job.get("variables", {})}.items():
        env[key] = string.Template(str(value)).safe_substitute(env)  # GitLab expands variables in variables
    # The cache: this session's harness cache, and the virtualenv a first pipeline would have made (this one).
    for path in job["cache"]["paths"]:
        target = checkout / path
        if Path(env["HARNESS_CACHE"]) == target:
            _restore_cache(target, cache)
        elif target.name == ".harness-venv":
            _restore_cache(target, VENV)
        else:
            pytest.fail(f"{config.name}: no emulation of the cached path {path}")
    pipeline = Pipeline(checkout, env)
    # One shell for the job, as GitLab's: a variable set in one line is seen by the next; any failing line fails it.
    script = "\n".join([*job.get("before_script", []), *job["script"]])
    done = pipeline.bash(script, job_name, ("-e",))
    assert done.returncode == 0, pipeline.output()
    assert job["artifacts"]["when"] == "always"
    pipeline.artifacts += [checkout / p for p in job["artifacts"]["paths"]]
    return pipeline


def _runs(pipeline: Pipeline) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run the pipeline made and its rebuild, from the uploaded artifacts, after checking they are there."""
    [runs_dir] = pipeline.artifacts
    assert runs_dir.is_dir(), f"the artifact path {runs_dir} does not exist"
    records = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/record.json"))]
    [run] = [r for r in records if r["rebuild_of"] is None]
    [rebuilt] = [r for r in records if r["rebuild_of"] == run["id"]]
    for record in (run, rebuilt):
        valid_record(record)
        assert record["status"] == "succeeded"
        outputs = runs_dir / record["id"] / "outputs"
        assert {"metrics.json", "predictions.csv", "predictions.png"} <= {p.name for p in outputs.iterdir()}
    assert rebuilt["outputs"]["files"] == run["outputs"]["files"]
    return run, rebuilt


def _without_comments(workflow: dict[str, Any]) -> dict[str, Any]:
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                lines = [line for line in step["run"].splitlines() if not line.strip().startswith("#")]
                step["run"] = "\n".join(lines).strip()
    return workflow


def test_the_readme_shows_the_github_file_as_it_is() -> None:
    """The README's copy leaves out the comments (the YAML's and the shell's); the rest is the file's."""
    section = README.read_text().split("\n## In CI\n", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```yaml\n(.*?)```", section, re.S)
    shown = _without_comments(yaml.safe_load(block))
    assert shown == _without_comments(yaml.safe_load((CI / "github-actions.yml").read_text()))
    assert "(examples/ci/gitlab-ci.yml)" in section


@pytest.mark.docker
@pytest.mark.slow
def test_github_actions_example_runs_as_it_is(origin: Path, tmp_path: Path, harness_cache: Path) -> None:
    pipeline = run_github(CI / "github-actions.yml", origin, tmp_path, harness_cache)
    run, _ = _runs(pipeline)
    sha = pipeline.env["GITHUB_SHA"]
    assert run["code"]["commit"] == sha and run["code"]["dirty"] is False
    assert run["host"]["ci"] == {
        "provider": "github-actions",
        "repository": "org/bikes",
        "run_id": "7001",
        "run_attempt": "1",
        "workflow": "harness",
        "job": "run",
        "ref": "refs/heads/main",
        "sha": sha,
        "actor": "octocat",
        "event": "push",
        "server_url": "https://github.com",
    }
    assert pipeline.env["HARNESS_CACHE"] == str(tmp_path / "home" / ".cache" / "harness")
    log = pipeline.output()
    assert ": IDENTICAL:" in log and "HARNESS_REMOTE is not set: nothing pushed" in log, log

    # A step that leaves a file in the checkout makes a dirty tree, and the example's run step refuses it (103).
    (pipeline.workspace / "scratch.txt").write_text("left by an earlier step\n")
    [step] = [
        s
        for s in yaml.safe_load((CI / "github-actions.yml").read_text())["jobs"]["run"]["steps"]
        if s.get("name") == "Run at the pushed commit"
    ]
    refused = pipeline.bash(step["run"], "dirty", ("-eo", "pipefail"))
    assert refused.returncode == 103 and "scratch.txt" in refused.stderr, pipeline.output()
    allowed = pipeline.bash("harness run --commit HEAD --allow-dirty", "allow-dirty", ("-e",))
    assert allowed.returncode == 103 and "CI never runs a dirty tree" in allowed.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_gitlab_ci_example_runs_as_it_is_and_loads_the_image_from_its_cache(
    origin: Path, tmp_path: Path, harness_cache: Path
) -> None:
    # A fresh runner: the image is not in its engine, only in the restored cache (this session's own image).
    shown = harness(origin, "env", "build", "--json")  # present: reused, nothing built
    assert shown.returncode == 0, shown.stderr
    image_id = json.loads(shown.stdout)["image_id"]
    subprocess.run(["docker", "image", "rm", "-f", image_id], check=True, capture_output=True)

    pipeline = run_gitlab(CI / "gitlab-ci.yml", origin, tmp_path / "gitlab", harness_cache)
    run, _ = _runs(pipeline)
    sha = pipeline.env["CI_COMMIT_SHA"]
    assert run["code"]["commit"] == sha and run["code"]["dirty"] is False
    assert run["environment"]["image_id"] == image_id
    assert run["host"]["ci"] == {
        "provider": "gitlab-ci",
        "project": "org/bikes",
        "pipeline_id": "8001",
        "pipeline_url": "https://gitlab.example/org/bikes/-/pipelines/8001",
        "job_id": "9001",
        "job_name": "harness",
        "job_url": "https://gitlab.example/org/bikes/-/jobs/9001",
        "ref": "main",
        "sha": sha,
        "server_url": "https://gitlab.example",
    }
    log = pipeline.output()
    assert "from the cache" in log and "installing" not in log, log  # loaded, not built
    assert ": IDENTICAL:" in log and "HARNESS_REMOTE is not set: nothing pushed" in log, log
    assert pipeline.env["HARNESS_CACHE"] == str(pipeline.workspace / ".harness-cache")
