"""argparse that fails the way our guide asks: exit 2 with one line saying what to fix.

Shared by every program (training, export, the service, the load tester and its benchmarks, the
demo, the GPU report, the ablation): each states its options once, as a pydantic settings class,
and gets its flags and help from `settings_flags`, its values from `settings_from`. Torch-free so
any program can import it.
"""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import BaseSettings

T = TypeVar("T")


class OneLineArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see --help)")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def validation_message(exc: Exception) -> str:
    """One line from a pydantic ValidationError: the first field and what is wrong."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc else msg  # a check across fields names them itself
    return str(exc).splitlines()[0]


def settings_from(cls: type[T], args: Any, skip: tuple[str, ...] = ()) -> T:
    """A settings object from the flags given (env and defaults for the rest), or exit 2. `skip`:
    namespace entries that are no settings (a subcommand's name, its own switches)."""
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    try:
        return cls(**overrides)
    except Exception as exc:
        fail(validation_message(exc))


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unwrap(annotation: Any) -> Any:
    """The annotation without Optional/Annotated around it."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def settings_flags(
    parser: argparse.ArgumentParser,
    settings: type[BaseModel],
    fields: Iterable[str] | None = None,
    *,
    short: Mapping[str, str] | None = None,
    positional: Iterable[str] = (),
) -> None:
    """One `--field-name` flag per settings field (all of them, or `fields`), generated from the
    class so that flags, choices, defaults and env names are stated once, in the settings:

    - help: the field's description, then `[ENV_NAME]` for a BaseSettings class and `(default X)`
      from the field (the help cannot drift from what a run uses);
    - choices from a Literal; `nargs="+"` for a list; a bool is a switch (`--force`, `--no-force`)
      that takes no value, so it never swallows a positional argument after it; ints and floats are
      parsed by argparse (its message names the flag), the rest reach pydantic as given;
    - `positional` fields are arguments without a flag (optional ones take `nargs="?"`);
    - unset flags are absent from the namespace
      (argparse.SUPPRESS), so the environment and the defaults apply: parse with settings_from.
    """
    prefix = str(settings.model_config.get("env_prefix", "")) if issubclass(settings, BaseSettings) else None
    positional = tuple(positional)
    for name in [*positional, *(f for f in fields or settings.model_fields if f not in positional)]:
        field = settings.model_fields[name]
        kind = _unwrap(field.annotation)
        text = field.description or name.replace("_", " ")
        if prefix is not None:
            text += f" [{(prefix + name).upper()}]"
        if field.default is not None and not field.is_required():
            text += f" (default {_shown(field.default)})"
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": text}
        if get_origin(kind) is Literal:
            kw["choices"] = [str(c) for c in get_args(kind)]
        elif get_origin(kind) is list:
            kw["nargs"] = "+"
        elif kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind in (int, float):
            kw["type"] = kind  # "argument --epochs: invalid int value: 'x'" before pydantic sees it
        if name in positional:
            parser.add_argument(name, **kw, **({} if field.is_required() else {"nargs": "?"}))
            continue
        flags = [f"--{name.replace('_', '-')}"]
        if short and name in short:
            flags.insert(0, short[name])
        parser.add_argument(*flags, dest=name, **kw)


def settings_parser(
    settings: type[BaseModel], prog: str, description: str, **kw: Any
) -> OneLineArgumentParser:
    """A parser whose flags are all of `settings`' fields (settings_flags' keywords pass through)."""
    p = OneLineArgumentParser(prog=prog, description=description)
    settings_flags(p, settings, **kw)
    return p
