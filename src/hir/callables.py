"""Users' own functions, named on the command line or in a config as `module:function`
(a module on sys.path) or `path/to/file.py:function`: feedback functions and relabel
functions. Python callers pass the callable itself."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from hir.errors import HIRError


def load_callable(spec: str | Callable, what: str) -> Callable:
    """A function from a callable or a `module:function` / `file.py:function` path."""
    if callable(spec):
        return spec
    module_name, sep, attribute = str(spec).rpartition(":")
    if not sep or not module_name or not attribute:
        raise HIRError(
            f"{what} {spec!r} is not of the form module:function (e.g. my_checks:is_correct "
            "or ./checks.py:is_correct)"
        )
    if module_name.endswith(".py") and not Path(module_name).is_file():
        raise HIRError(f"{what} file {module_name!r} does not exist")
    module = _import_guarded(module_name, what)
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HIRError(f"{what} module {module_name!r} has no function {attribute!r}")
    return function


class _ExitAtImport(BaseException):
    """`os._exit` called while a user's module was imported."""


def _import_guarded(module_name: str, what: str) -> ModuleType:
    """Import a user's module as hir calls a user's function: whatever it does at import
    (raise, `sys.exit`, an argparse error over hir's own command line, `os._exit`) ends in one
    line naming it. The module sees a command line of its own name only, and what it prints to
    stderr is kept for that line."""
    stderr = io.StringIO()
    real_exit, real_argv = os._exit, sys.argv

    def exit_at_import(code: int = 0):
        raise _ExitAtImport(code)

    os._exit, sys.argv = exit_at_import, [module_name]
    try:
        with contextlib.redirect_stderr(stderr):
            if module_name.endswith(".py"):
                path = Path(module_name)
                module_spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)
                return module
            return importlib.import_module(module_name)
    except (SystemExit, _ExitAtImport) as exc:
        said = (stderr.getvalue().strip().splitlines() or [""])[-1]
        call = "os._exit" if isinstance(exc, _ExitAtImport) else "sys.exit"
        raise HIRError(
            f"importing {what} module {module_name!r} ended the process ({call}({exc.args[0] if exc.args else ''!r})"
            + (f": {said}" if said else "")
            + "): hir imports it as a module; put its command-line code under "
            '`if __name__ == "__main__":`'
        ) from None
    except Exception as exc:  # noqa: BLE001 - report the user's import problem in one line
        raise HIRError(
            f"cannot import {what} module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        os._exit, sys.argv = real_exit, real_argv
