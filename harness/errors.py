"""One exception root for everything harness reports to a user.

    HarnessError                 exit 100  anything harness itself could not do
    ├── UsageError               exit 2    a bad option, argument or --where/--sort expression
    ├── ConfigError              exit 101  no config, unknown key, wrong type (names the key path)
    ├── CodeError                exit 102  not a git repository, unknown or ambiguous rev
    │   └── DirtyTreeError       exit 103  uncommitted changes, names the files
    ├── EnvironmentBuildError    exit 104  base recipe, lock, wheel hash, image build or load
    ├── DataError                exit 105  missing data path, refused file type, bad snapshot
    ├── EngineUnavailable        exit 106  Docker not running, not reachable, or not answering in time
    ├── StoreCorruption          exit 107  an object whose bytes no longer match its name, a run record
    │                                      that no longer matches its seal or cannot be read
    ├── NotFound                 exit 108  unknown run, snapshot or object id
    └── RemoteError              exit 109  a registry that cannot be reached, refuses the login or the request,
                                           or presents a certificate this machine does not trust

A run that started returns its own exit code instead; an interrupted run exits 130. A sweep that ran exits with
the number of its runs that failed, at most 99.
Every error carries what happened (the message) and what to do next (the hint); the CLI prints both
and no traceback unless asked for with -v.
"""

from __future__ import annotations

INTERRUPTED_EXIT_CODE = 130
MAX_FAILED_EXIT_CODE = 99  # `harness sweep` exits with the number of failed runs, up to this


class HarnessError(Exception):
    """Anything else harness itself could not do."""

    exit_code = 100

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class UsageError(HarnessError):
    """A bad option, argument or --where/--sort expression."""

    exit_code = 2


class ConfigError(HarnessError):
    """No config, an unknown key or a value of the wrong type; the message names the key path."""

    exit_code = 101


class CodeError(HarnessError):
    """Not a git repository, or an unknown or ambiguous rev."""

    exit_code = 102


class DirtyTreeError(CodeError):
    """Uncommitted changes where a clean tree is required; the message names the files."""

    exit_code = 103


class EnvironmentBuildError(HarnessError):
    """The base recipe, the lock, a wheel's hash, or building or loading the image."""

    exit_code = 104


class DataError(HarnessError):
    """A missing data path, a refused file type or a bad snapshot."""

    exit_code = 105


class EngineUnavailable(HarnessError):
    """Docker is not running, not reachable, or not answering within HARNESS_DOCKER_TIMEOUT."""

    exit_code = 106


class StoreCorruption(HarnessError):
    """A stored object or run record that no longer matches its hash or seal, or cannot be read."""

    exit_code = 107


class NotFound(HarnessError):
    """An unknown run, snapshot or object id."""

    exit_code = 108


class RemoteError(HarnessError):
    """A remote registry that cannot be reached, refuses the login or a request, or is not trusted."""

    exit_code = 109


ERRORS: tuple[type[HarnessError], ...] = (
    UsageError,
    HarnessError,
    ConfigError,
    CodeError,
    DirtyTreeError,
    EnvironmentBuildError,
    DataError,
    EngineUnavailable,
    StoreCorruption,
    NotFound,
    RemoteError,
)
