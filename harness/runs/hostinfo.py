"""Facts about the machine and the CI job a run happened on."""

from __future__ import annotations

import os
import platform
from typing import Any

from harness import __version__
from harness.urls import without_credentials

_GITHUB = {
    "repository": "GITHUB_REPOSITORY",
    "run_id": "GITHUB_RUN_ID",
    "run_attempt": "GITHUB_RUN_ATTEMPT",
    "workflow": "GITHUB_WORKFLOW",
    "job": "GITHUB_JOB",
    "ref": "GITHUB_REF",
    "sha": "GITHUB_SHA",
    "actor": "GITHUB_ACTOR",
    "event": "GITHUB_EVENT_NAME",
    "server_url": "GITHUB_SERVER_URL",
}
_GITLAB = {
    "project": "CI_PROJECT_PATH",
    "pipeline_id": "CI_PIPELINE_ID",
    "pipeline_url": "CI_PIPELINE_URL",
    "job_id": "CI_JOB_ID",
    "job_name": "CI_JOB_NAME",
    "job_url": "CI_JOB_URL",
    "ref": "CI_COMMIT_REF_NAME",
    "sha": "CI_COMMIT_SHA",
    "server_url": "CI_SERVER_URL",
}


def ci_facts(env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The CI provider and job, or None outside CI."""
    env = dict(os.environ) if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        return {"provider": "github-actions", **_facts(_GITHUB, env)}
    if env.get("GITLAB_CI"):
        return {"provider": "gitlab-ci", **_facts(_GITLAB, env)}
    if env.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return {"provider": "unknown"}
    return None


def _facts(names: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """The set variables' values; URLs without credentials (a self-hosted server's may carry them)."""
    facts = {k: env[v] for k, v in names.items() if env.get(v)}
    for key in [k for k in facts if k.endswith("_url")]:
        clean = without_credentials(facts[key])
        if clean is None:
            del facts[key]
        else:
            facts[key] = clean
    return facts


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_facts(engine_version: dict[str, str]) -> dict[str, Any]:
    return {
        "engine_version": engine_version.get("engine_version"),
        "engine_api": engine_version.get("api_version"),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "hostname": platform.node(),
        "harness_version": __version__,
        "ci": ci_facts(),
    }
