"""argparse that fails the way our guide asks: exit 2 with one line saying what to fix.

Shared by every CLI (train, export, loadtest); torch-free so any program can import it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, TypeVar

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
        loc = ".".join(str(p) for p in first.get("loc", ())) or "value"
        return f"{loc}: {first.get('msg', 'invalid')}"
    return str(exc).splitlines()[0]


def settings_from(cls: type[T], args: Any, skip: tuple[str, ...] = ("command", "no_report", "dry_run")) -> T:
    """A settings object from the flags given (env and defaults for the rest), or exit 2."""
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    try:
        return cls(**overrides)
    except Exception as exc:
        fail(validation_message(exc))
