"""What several commands share: options in the one --help style, checked numeric options, the --quiet
flag, console logging."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

import fgvu
from fgvu.options import QUIET_HELP, Declared, Spec, describe_range, parse, with_default

PACKAGE = Path(fgvu.__file__).resolve().parent  # warnings from files here are fgvu's own


def option(default: Any, *decls: str, help: str, shown: str | None = None, **kwargs: Any) -> Any:
    """A typer option whose --help ends in '(default: X)' like every generated one; `shown` names
    a default that its value does not say (None, or a default computed later)."""
    return typer.Option(default, *decls, help=with_default(help, shown if shown is not None else default),
                        show_default=False, **kwargs)


def checked_option(default: Any, *decls: str, help: str, kind: type = int, shown: str | None = None,
                   **accepts: Any) -> Any:
    """An `option` whose value is parsed and checked like a config field's (`fgvu.options`): `accepts`
    takes Spec's range and choices (ge=1, gt=0, choices=...); a bad value is an OptionError that
    names the option and what it accepts, and --help says "Must be >=1." as generated options do."""
    limits = Spec(help, **accepts)
    rng = describe_range(limits)
    text = f"{help} Must be {rng}." if rng else help

    def convert(param: typer.CallbackParam, value: Any) -> Any:
        if not isinstance(value, str):  # None, or the default
            return value
        field = Declared(param.name, Spec(help, flag=param.opts[0], **accepts), kind, default)
        return parse(field, value)

    return option(default, *decls, help=text, shown=shown, callback=convert, parser=str)


def quiet_option() -> Any:
    """--quiet: no progress bars."""
    return typer.Option(False, "--quiet", help=QUIET_HELP)


def old_progress_option() -> Any:
    """--progress/--no-progress, hidden: the spelling before --quiet, kept so old scripts work."""
    return typer.Option(None, "--progress/--no-progress", hidden=True, help="Old spelling: --no-progress is --quiet.")


def show_progress(quiet: bool, old_progress: bool | None) -> bool:
    """Progress bars unless --quiet or the old --no-progress was given."""
    return not quiet and old_progress is not False


@contextlib.contextmanager
def console_logging() -> Iterator[logging.Logger]:
    """While a command runs: fgvu's log records print once each, as 'LEVEL message' lines that do
    not break a progress bar. A handler the embedding program gave the logger is kept instead.
    fgvu's own warnings (a dataset's left-out videos) print the same way, as one line each,
    instead of Python's two (message, then the source line that warned)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    logger = logging.getLogger("fgvu")
    saved = logger.level, logger.propagate
    show_warning = warnings.showwarning

    def show_fgvu_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UserWarning) and Path(filename).resolve().is_relative_to(PACKAGE):
            logger.warning("%s", message)
        else:
            show_warning(message, category, filename, lineno, file, line)

    handler = None
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        # a library's root handler (open_clip's logging.warning installs one) would print every line again
        logger.propagate = False
    try:
        warnings.showwarning = show_fgvu_warning
        with logging_redirect_tqdm(loggers=[logger]):
            yield logger
    finally:
        warnings.showwarning = show_warning
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
