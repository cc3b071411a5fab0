"""The floor of a Python command on harness's specified stack, for bench/remote.py's second-machine rebuild: what
any such command pays to do the same engine work as `docker pull` + `docker run`, and nothing else.

It imports typer (harness's command line) and the Docker SDK (harness's only way to the engine), negotiates the
API version as harness does, pulls IMAGE@DIGEST through the SDK, then creates, attaches to, starts, waits on and
removes a container running ``python3 -c pass`` with no network. No record, no store, no hashing, no checks.

Usage: python bench/sdkfloor.py REPOSITORY@sha256:DIGEST
"""

from __future__ import annotations

import sys

import docker
import typer  # noqa: F401  (imported for its cost: every harness command pays it)


def main(ref: str) -> int:
    repository, _, digest = ref.partition("@")
    api = docker.APIClient(version="auto")
    api.pull(repository, tag=digest)
    host_config = api.create_host_config(network_mode="none")
    container = api.create_container(ref, ["python3", "-c", "pass"], host_config=host_config)
    stream = api.attach_socket(container, params={"stdout": 1, "stderr": 1, "stream": 1})
    try:
        api.start(container)
        code = int(api.wait(container)["StatusCode"])
    finally:
        stream.close()
        api.remove_container(container, force=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
