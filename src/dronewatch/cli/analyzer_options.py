"""`--analyzer-option ANALYZER.FIELD=VALUE` and `dronewatch analyzers`: the analyzers' tunables
from the command line.

Every command that builds an `AnalysisConfig` (analyze, diff, agent, replay, serve) takes the
option through `add_analyzer_option` and turns it into `AnalyzerOptions` with
`analyzer_options`: ANALYZER is an analyzer's name, FIELD a field of its frozen `<Name>Options`
dataclass, and VALUE is converted to the field's type (int, float, bool, str, or a tuple of
those, comma-separated); an options dataclass that cannot take every value of its type says so
in `__post_init__` (ValueError). A mistake is one `ConfigError` line naming the option, and the
valid names on a typo. `dronewatch analyzers` prints every analyzer, its fields, their defaults
and their docstrings (read from the source, where attribute docstrings live).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import sys
import textwrap
import typing
from collections.abc import Sequence
from typing import Any, TextIO

from dronewatch.analyzers import AnalyzerOptions, default_analyzers
from dronewatch.core.dnscache import DnsNameCache
from dronewatch.core.hooks import Analyzer, Context
from dronewatch.exceptions import ConfigError

OPTION = "--analyzer-option"
EXAMPLE = "dns.max_answers=8"

_SCALARS: dict[type, str] = {
    bool: "true or false",
    int: "a whole number, 0 or more",
    float: "a number, 0 or more",
    str: "text",
}
"""The field types a value converts to, with what a value of each looks like."""
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def add_analyzer_option(parser: Any) -> None:
    """`--analyzer-option ANALYZER.FIELD=VALUE` (repeatable) on a parser or argument group."""
    parser.add_argument(
        OPTION,
        action="append",
        default=[],
        dest="analyzer_option",
        metavar="ANALYZER.FIELD=VALUE",
        help=f"set an analyzer's tunable, e.g. {EXAMPLE}; repeatable (`dronewatch analyzers` "
        "lists them with their defaults)",
    )


def analyzer_options(items: Sequence[str]) -> AnalyzerOptions:
    """The analyzers' options with each `ANALYZER.FIELD=VALUE` of `items` applied in order (a
    later one wins); ConfigError naming the first that is wrong."""
    fields = {f.name: f for f in dataclasses.fields(AnalyzerOptions)}
    options = AnalyzerOptions()
    for item in items:
        target, eq, text = item.partition("=")
        analyzer, dot, name = target.strip().partition(".")
        if not eq or not dot or not analyzer or not name:
            raise ConfigError(f"{OPTION} {item!r}: expected ANALYZER.FIELD=VALUE, e.g. {EXAMPLE}")
        if analyzer not in fields:
            known = ", ".join(sorted(fields))
            if analyzer in analyzer_names():
                raise ConfigError(
                    f"{OPTION} {item!r}: analyzer {analyzer!r} has no options; analyzers with "
                    f"options: {known}"
                )
            raise ConfigError(
                f"{OPTION} {item!r}: no analyzer {analyzer!r}; analyzers with options: {known}"
            )
        current = getattr(options, analyzer)
        hints = typing.get_type_hints(type(current))
        names = [f.name for f in dataclasses.fields(current)]
        if name not in names:
            raise ConfigError(
                f"{OPTION} {item!r}: {analyzer} has no option {name!r}; its options: "
                f"{', '.join(names)}"
            )
        try:
            value = convert(text, hints[name])
        except ValueError as exc:
            raise ConfigError(
                f"{OPTION} {item!r}: {analyzer}.{name} takes {exc}, not {text!r}"
            ) from None
        try:
            changed = dataclasses.replace(current, **{name: value})
        except ValueError as exc:  # the options' own check (`__post_init__`)
            raise ConfigError(f"{OPTION} {item!r}: {analyzer} options: {exc}") from None
        options = dataclasses.replace(options, **{analyzer: changed})
    return options


def convert(text: str, tp: Any) -> object:
    """`text` as a value of type `tp`: int, float, bool, str, or a tuple of those (items
    separated by commas; empty text is the empty tuple). ValueError says what `tp` takes;
    TypeError for a type that cannot be given on the command line."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
            parts = text.split(",") if text.strip() else []
            try:
                return tuple(_scalar(p.strip(), args[0]) for p in parts)
            except ValueError:
                raise ValueError(f"a comma-separated list of {_SCALARS[args[0]]}") from None
        if args and Ellipsis not in args and all(a in _SCALARS for a in args):
            parts = text.split(",")
            what = f"{len(args)} comma-separated values ({', '.join(type_name(a) for a in args)})"
            if len(parts) != len(args):
                raise ValueError(what)
            try:
                return tuple(_scalar(p.strip(), a) for p, a in zip(parts, args, strict=True))
            except ValueError:
                raise ValueError(what) from None
    elif tp in _SCALARS:
        return _scalar(text.strip() if tp is not str else text, tp)
    raise TypeError(f"an option of type {type_name(tp)} cannot be set from the command line")


def _scalar(text: str, tp: type) -> object:
    expected = _SCALARS[tp]
    if tp is str:
        return text
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(expected)
    try:
        number: float = int(text) if tp is int else float(text)
    except ValueError:
        raise ValueError(expected) from None
    # Every analyzer option is a count, a size or a limit: a negative one, or nan, is a mistake.
    if number < 0 or not math.isfinite(number):
        raise ValueError(expected)
    return number


def type_name(tp: Any) -> str:
    """`int`, `tuple[str, ...]`: a field type as it is written."""
    if typing.get_origin(tp) is tuple:
        args = ("..." if a is Ellipsis else type_name(a) for a in typing.get_args(tp))
        return f"tuple[{', '.join(args)}]"
    return getattr(tp, "__name__", str(tp))


def show(value: object) -> str:
    """A value as it is written after `=` on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(show(v) for v in value)
    return str(value)


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string after each field), one line each;
    empty when the source cannot be read."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    docs: dict[str, str] = {}
    if isinstance(body, ast.ClassDef):
        for node, after in zip(body.body, body.body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def analyzer_names() -> list[str]:
    """The name of every built-in analyzer, in dispatch order."""
    return [a.name for a in _analyzers()]


def _analyzers() -> list[Analyzer]:
    # Built only to be described: nothing is emitted.
    return default_analyzers(Context(emit=lambda record: None, dns=DnsNameCache()))


def write_listing(out: TextIO) -> None:
    """Every analyzer, its docstring's first line, and each option: default, type, docstring."""
    options = AnalyzerOptions()
    out.write(
        f"Analyzer options: set one with {OPTION} ANALYZER.FIELD=VALUE (analyze, diff, agent, "
        "replay, serve); repeatable.\n"
    )
    for analyzer in _analyzers():
        doc = (inspect.getdoc(analyzer) or "").split("\n\n")[0]
        out.write(f"\n{analyzer.name}: {' '.join(doc.split())}\n")
        current = getattr(options, analyzer.name, None)
        if current is None:
            out.write("  (no options)\n")
            continue
        hints = typing.get_type_hints(type(current))
        docs = field_docs(type(current))
        for f in dataclasses.fields(current):
            default = show(getattr(current, f.name))
            out.write(f"  {analyzer.name}.{f.name}={default}  ({type_name(hints[f.name])})\n")
            if docs.get(f.name):
                out.write(
                    textwrap.fill(
                        docs[f.name], 96, initial_indent=" " * 6, subsequent_indent=" " * 6
                    )
                    + "\n"
                )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dronewatch analyzers`."""
    p = sub.add_parser(
        "analyzers",
        help="list the analyzers and the options --analyzer-option sets",
        description=(
            "List every analyzer with its options: name, default, type and what it does. Set one "
            f"with {OPTION} ANALYZER.FIELD=VALUE on analyze, diff, agent, replay or serve."
        ),
    )
    p.set_defaults(func=cmd_analyzers)


def cmd_analyzers(args: argparse.Namespace) -> int:
    """Print the analyzers and their options."""
    write_listing(sys.stdout)
    return 0
