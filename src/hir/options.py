"""Command-line options from dataclasses, for every `hir` command alike:

- each field is a flag, spelled `--output_dir` or `--output-dir`;
- `--config run.yaml` fills fields from a YAML mapping, and flags override it;
- any mistake (an unknown flag, a bad value, an unknown YAML key, a YAML file that is not a
  mapping) is an `HIRError`: one line, no traceback, no usage dump.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from hir.errors import HIRError


def flag_help(text: str) -> dict:
    """A config field's metadata: the help text of its flag."""
    return {"help": text}


class OptionParser(HfArgumentParser):
    def __init__(self, dataclass_types: Sequence[type], prog: str, description: str | None = None):
        super().__init__(list(dataclass_types), prog=prog, description=description)
        self.add_argument("--config", help="YAML file of these fields; flags override it")

    def error(self, message: str):  # argparse would print usage and exit
        raise HIRError(f"{message} (see `{self.prog} -h`)")

    def parse(self, args: Sequence[str], defaults: dict[str, Any] | None = None) -> tuple:
        """One instance per dataclass, from `defaults`, then `--config`, then the flags."""
        args = list(args)
        self.set_defaults(**(defaults or {}))
        config_file = config_option(args)
        if config_file:
            self.set_defaults(**read_yaml_fields(config_file, self.field_names()))
        try:
            parsed = self.parse_args_into_dataclasses(args)
            return tuple(parsed[: len(self.dataclass_types)])  # not the `--config` namespace
        except ValueError as exc:  # HfArgumentParser's message for leftover arguments
            leftover = str(exc).partition(":")[2].strip() or str(exc)
            raise HIRError(f"unknown option(s) {leftover} (see `{self.prog} -h`)") from exc

    def parse_known(
        self, args: Sequence[str], values: dict[str, Any] | None = None
    ) -> tuple[tuple, list[str]]:
        """Like `parse`, for a command whose flags serve several parsers: `values` (e.g. a
        YAML file's) fill the fields this parser has, and the arguments it does not know are
        returned for the others. `--config` is the caller's to read."""
        mine = {k: v for k, v in (values or {}).items() if k in self.field_names()}
        self.set_defaults(**mine)
        try:
            *parsed, rest = self.parse_args_into_dataclasses(
                drop_config_option(list(args)), return_remaining_strings=True
            )
        except ValueError as exc:
            raise HIRError(f"{exc} (see `{self.prog} -h`)") from exc
        return tuple(parsed[: len(self.dataclass_types)]), list(rest)

    def field_names(self) -> set[str]:
        return {f.name for t in self.dataclass_types for f in dataclasses.fields(t)}


def config_option(args: list[str]) -> str | None:
    for index, arg in enumerate(args):
        if arg == "--config":
            if index + 1 >= len(args):
                raise HIRError("--config needs a YAML file")
            return args[index + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def drop_config_option(args: list[str]) -> list[str]:
    """`args` without `--config FILE` / `--config=FILE`."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("--config="):
            kept.append(arg)
    return kept


def read_yaml_fields(path: str, known: set[str]) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise HIRError(f"config file {path!r} does not exist")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise HIRError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise HIRError(
            f"{path} must be a YAML mapping of field: value, got a {type(values).__name__}"
        )
    unknown = sorted(str(k) for k in set(values) - known)
    if unknown:
        raise HIRError(f"{path}: unknown field(s) {', '.join(unknown)}; see -h for the fields")
    return values


def pop_option(args: list[str], name: str) -> str | None:
    """Remove `--name VALUE` or `--name=VALUE` from `args` and return VALUE (None if absent)."""
    flag = f"--{name}"
    for index, arg in enumerate(args):
        if arg == flag:
            if index + 1 >= len(args) or args[index + 1].startswith("--"):
                raise HIRError(f"{flag} needs a value")
            value = args[index + 1]
            del args[index : index + 2]
            return value
        if arg.startswith(flag + "="):
            del args[index]
            return arg.partition("=")[2]
    return None
