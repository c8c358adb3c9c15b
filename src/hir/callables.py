"""Users' own functions, named on the command line or in a config as `module:function`
(a module on sys.path) or `path/to/file.py:function`: feedback functions and relabel
functions. Python callers pass the callable itself."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

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
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise HIRError(f"{what} file {module_name!r} does not exist")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except HIRError:
        raise
    except Exception as exc:  # noqa: BLE001 - report the user's import problem in one line
        raise HIRError(
            f"cannot import {what} module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HIRError(f"{what} module {module_name!r} has no function {attribute!r}")
    return function
