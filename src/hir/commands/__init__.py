"""The `hir` command's subcommands, one module each (or a few close ones together): the
dataclass of its own options and its handler, `run_<command>(args)`, a thin layer over the
Python API. `hir.cli` dispatches to them and turns every way out into one line."""

from __future__ import annotations


def option_parser(prog: str, *dataclass_types, description: str | None = None):
    """A parser of `dataclass_types`' fields, as flags (`--output_dir` or `--output-dir`) and
    `--config run.yaml` keys (`hir.options`); imported when a command runs, so that `hir -h`
    stays fast."""
    from hir.options import OptionParser

    return OptionParser(dataclass_types, prog=prog, description=description)
