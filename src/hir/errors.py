"""The one exception type users see: a message that says what is wrong and how to fix it."""


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
