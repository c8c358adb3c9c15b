"""The one exception type users see: a message that says what is wrong and how to fix it."""

from collections.abc import Iterator
from contextlib import contextmanager


class HIRError(Exception):
    """Bad input or a broken environment. The CLI prints it as one line, without a traceback."""


class Terminated(BaseException):
    """SIGTERM (what schedulers send) arrived: the run stops as on Ctrl-C, its last checkpoint
    intact. A BaseException, so that no `except Exception` swallows it."""


# What a user's function may not turn into an error of its own: the user stopping the run.
STOPS = (KeyboardInterrupt, Terminated)


def user_exit_error(exc: BaseException, what: str) -> HIRError:
    """The one line for a user's function that tried to end the process (`sys.exit`, or
    another BaseException), instead of returning."""
    return HIRError(
        f"{what} raised {type(exc).__name__}({exc}) instead of returning: hir stopped; a "
        "function hir calls must return its result (exit codes belong to the hir command)"
    )


@contextmanager
def user_code(
    what: str, detail: str = "", fix: str = "", passthrough: tuple = ()
) -> Iterator[None]:
    """Around a call into a user's function `what`: whatever it raises becomes one HIRError
    line ("WHAT raised TYPE: MESSAGE" + `detail` + `fix`), an attempt to end the process
    (`sys.exit`) too; HIRError, the user's own stop (Ctrl-C, SIGTERM) and `passthrough` pass."""
    try:
        yield
    except (HIRError, *STOPS, *passthrough):
        raise
    except Exception as exc:  # noqa: BLE001 - user code; report it in one line
        raise HIRError(f"{what} raised {type(exc).__name__}: {exc}{detail}{fix}") from exc
    except BaseException as exc:  # sys.exit() and the like: say so, do not vanish
        raise user_exit_error(exc, what) from exc
