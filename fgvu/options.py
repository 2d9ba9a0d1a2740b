"""Options declared once: each config field carries its command-line help and the values it accepts.

A field of a config dataclass (ExtractConfig, ModelConfig, FitConfig) is declared with `opt()`,
which puts a `Spec` in the field's metadata: the help text and, where needed, the option's
spelling, its choices, its range and a parser for list-valued options. From that declaration:

- `config_options` generates a command's typer options, one per field. Every generated option
  defaults to None (not given), so the precedence stays: dataclass default < fgvu.toml section <
  command line;
- `check` refuses a value outside the choices or range, for the command line at parse time and
  for fgvu.toml (`fgvu.settings.apply_overrides`) alike;
- `--help` shows each default as "(default: X)", choices as `a|b|c` and ranges as ">0" or "in [0,1)".
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal, Optional

from fgvu.errors import FgvuError

KEY = "fgvu.option"
QUIET_HELP = "No progress bars; warnings and the summary still print."


class OptionError(FgvuError):
    """A command-line or fgvu.toml value that its option does not accept."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """What one option accepts and how --help presents it."""

    help: str
    flag: str | None = None  # the declaration when not --<field-name>, e.g. "--normalize/--no-normalize"
    inverted: bool = False  # a lone flag that turns the field off (--quiet sets progress False)
    choices: tuple | None = None  # allowed values (of each item, for tuple fields); Literal types give their own
    gt: float | None = None  # the range: greater than gt (or equal to ge), less than lt (or equal to le)
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    parse: Callable[[str], Any] | None = None  # command-line text -> value; raises ValueError saying what is wrong
    shown: str | None = None  # how --help describes a default of None ("the dataset's prompt")
    option: bool = True  # False: the program sets the field itself; no option


def opt(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with its option `Spec`; `dataclasses.MISSING` as default makes the option required."""
    return dataclasses.field(default=default, metadata={KEY: Spec(help, **spec)})


@dataclasses.dataclass(frozen=True)
class Declared:
    """One config field as an option: its name, spec, resolved type and default."""

    name: str
    spec: Spec
    type: Any
    default: Any  # dataclasses.MISSING when required

    @property
    def flag(self) -> str:
        """The declaration typer gets: "--lr", "--bidirectional/--unidirectional"."""
        if self.spec.flag:
            return self.spec.flag
        dashed = "--" + self.name.replace("_", "-")
        return f"{dashed}/--no-{dashed[2:]}" if _base(self.type) is bool else dashed

    @property
    def option_name(self) -> str:
        """The option as users type it, for messages: "--lr", "--bidirectional"."""
        return self.flag.split("/")[0]

    @property
    def choices(self) -> tuple | None:
        """The allowed values (of each item), from the spec or a Literal type."""
        if self.spec.choices is not None:
            return tuple(self.spec.choices)
        base = _base(self.type)
        return typing.get_args(base) if typing.get_origin(base) is Literal else None


def _base(annotation: Any) -> Any:
    """X for `X | None`, else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def declared(cls: type) -> Iterator[Declared]:
    """Every field of dataclass `cls` as a `Declared`, nested dataclass fields (FitConfig.model) flattened."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from declared(hints[f.name])
            continue
        spec = f.metadata.get(KEY)
        if spec is None:  # a new field without opt() would silently miss its option
            raise TypeError(f"{cls.__name__}.{f.name} has no option spec; declare it with fgvu.options.opt()")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        yield Declared(f.name, spec, hints[f.name], default)


def describe_range(spec: Spec) -> str | None:
    """'>0', '>=1', 'in [0,1)', ... (no spaces, so --help never wraps inside) or None without a range."""
    low = ("(", spec.gt) if spec.gt is not None else ("[", spec.ge) if spec.ge is not None else None
    high = (")", spec.lt) if spec.lt is not None else ("]", spec.le) if spec.le is not None else None
    if low and high:
        return f"in {low[0]}{low[1]:g},{high[1]:g}{high[0]}"
    if low:
        return f"{'>' if low[0] == '(' else '>='}{low[1]:g}"
    if high:
        return f"{'<' if high[0] == ')' else '<='}{high[1]:g}"
    return None


def _in_range(value: float, spec: Spec) -> bool:
    return ((spec.gt is None or value > spec.gt) and (spec.ge is None or value >= spec.ge)
            and (spec.lt is None or value < spec.lt) and (spec.le is None or value <= spec.le))


def check(field: Declared, value: Any, where: str) -> None:
    """Refuse `value` (or an item of a tuple value) outside the field's choices or range; `where` names the source."""
    if value is None:
        return
    items = value if isinstance(value, (tuple, list)) else (value,)
    choices = field.choices
    rng = describe_range(field.spec)
    for item in items:
        if choices is not None and item not in choices:
            raise OptionError(f"{where}: {item!r} is not one of {', '.join(map(str, choices))}")
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise OptionError(f"{where}: {item} is not a finite number" + (f"; it must be {rng}" if rng else ""))
        if not _in_range(item, field.spec):
            raise OptionError(f"{where}: {item:g} is out of range; it must be {rng}")


def check_field(cls: type, name: str, value: Any, where: str) -> None:
    """`check` for the field `name` of dataclass `cls`; a field without a spec takes any value of its type."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if KEY in field.metadata:
        check(Declared(name, field.metadata[KEY], typing.get_type_hints(cls)[name], field.default), value, where)


def int_list(text: str) -> tuple[int, ...]:
    """'8,16,32' -> (8, 16, 32)."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError("expected comma-separated integers such as 8,16,32") from None


def parse(field: Declared, text: str) -> Any:
    """A command-line value of `field` -> the field's value, checked; an OptionError names the option."""
    base = _base(field.type)
    try:
        if field.spec.parse is not None:
            value = field.spec.parse(text)
        elif base is int:
            value = int(text)
        elif base is float:
            value = float(text)
        else:
            value = text
    except ValueError as e:  # the spec's parser says what is wrong; int() and float() only fail on non-numbers
        problem = e if field.spec.parse is not None else "not an integer" if base is int else "not a number"
        raise OptionError(f"{field.option_name} {text!r}: {problem}") from None
    check(field, value, field.option_name)
    return value


def format_default(field: Declared) -> str | None:
    """The default as --help shows it: 'v,i,t', 'none', '--bidirectional', '0.001'; None when there is none."""
    value = field.default
    if value is dataclasses.MISSING:
        return None
    if value is None:
        return field.spec.shown
    if isinstance(value, bool):  # the flag in effect; a lone switch (--quiet) shows none
        on, _, off = field.flag.partition("/")
        return (on if value else off) if off else None
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def with_default(help: str, default: Any) -> str:
    """`help` followed by '(default: X)' on a line of its own: the one style every command's --help uses."""
    return help if default is None else f"{help}\n\n(default: {default})"


def help_text(field: Declared) -> str:
    """The field's help, its range in words and its default."""
    rng = describe_range(field.spec)
    text = f"{field.spec.help} Must be {rng}." if rng else field.spec.help
    return with_default(text, format_default(field))


def _display_type(field: Declared) -> Any:
    """The annotation typer shows in --help's type column: choices as a Literal, else the (item) type."""
    if field.choices is not None:
        return Literal[tuple(str(c) for c in field.choices)]
    base = _base(field.type)
    if typing.get_origin(base) is tuple:
        base = typing.get_args(base)[0]
    return base if base in (int, float, bool) else str


def _convert(field: Declared) -> Callable[[Any], Any]:
    """The option's callback: typer hands over the raw text (or the flag's bool) and gets the field value."""
    is_flag = _base(field.type) is bool

    def convert(value: Any = None) -> Any:
        if value is None:
            return None
        if is_flag:
            return not value if field.spec.inverted else value
        return parse(field, value)

    return convert


def _parameter(field: Declared) -> inspect.Parameter:
    """The keyword parameter typer turns into the field's option."""
    import typer  # only the command line needs it; the configs import this module too

    display = _display_type(field)
    info = typer.Option(
        ... if field.default is dataclasses.MISSING else None, field.flag, help=help_text(field), show_default=False,
        # typer passes the text through and `convert` parses it: a bad value is then an OptionError (a
        # FgvuError naming the option and its range), where typer's own parsing would make a usage error
        callback=_convert(field), parser=None if display is bool else str,
    )
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=Optional[display])


def field_option(cls: type, name: str) -> Any:
    """The generated typer option of one field of `cls`, for a command that takes that option
    without the rest of the dataclass (`--threads` of evaluate, predict and ablations)."""
    field = next((f for f in declared(cls) if f.name == name), None)
    if field is None or not field.spec.option:
        raise TypeError(f"{cls.__name__} has no option field {name!r}")
    return _parameter(field).default


def config_options(*classes: type) -> Callable:
    """Decorator: give a command one typer option per field of the dataclasses `classes`.

    The command takes `**options` and receives {field name: value, or None when not given}.
    Generated options take the place of the bare `*` in its signature (or go last): explicit
    parameters before it come first in --help, keyword-only ones after the generated ones.
    """

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if len(params) == len(signature.parameters):
            raise TypeError(f"{command.__name__} must take **options to receive the generated options")
        at = next((i for i, p in enumerate(params) if p.kind is p.KEYWORD_ONLY), len(params))
        generated = [_parameter(field) for cls in classes for field in declared(cls) if field.spec.option]
        params[at:at] = generated
        command.__signature__ = signature.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
