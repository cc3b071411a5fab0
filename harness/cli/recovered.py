"""What every command that opens a project store does first: finish the runs whose harness died, and say so.

The work is harness.runs.recovery's; this prints each run it finished once, on stderr (stdout stays the
command's own, JSON included). A command outside a project, or one whose store has no runs yet, costs a config
lookup and nothing more.
"""

# No `from __future__ import annotations`: typer reads the handlers' annotations (see harness/cli/app.py).

from pathlib import Path

from harness.cli.output import echo
from harness.errors import HarnessError


def finish_dead_runs(project: Path) -> None:
    from harness.project.config import project_layout
    from harness.runs.recovery import recover

    try:
        layout = project_layout(project)
    except HarnessError:
        return  # no project here: the command itself says so
    try:
        found = recover(layout)
    except HarnessError as exc:  # the command itself goes on, and says more if the store is in trouble
        echo(f"harness: warning: could not check for runs whose harness died: {exc.message}", err=True)
        return
    for each in found:
        echo(f"harness: {each.message()}", err=True, color="gray" if each.marked else "red")
