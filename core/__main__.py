"""`python -m core ...`: the CLI over the same functions the dashboard calls.

Each sub-command lives in `core/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. A SigscopeError becomes `error: ...` on stderr, one line per problem, and
exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import core.commands
from core.errors import SigscopeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Sigscope engine CLI")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(core.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"core.commands.{info.name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # freed activation buffers stay in the process (core.runtime), before any big allocation
    from core.runtime import tune_malloc
    tune_malloc()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SigscopeError as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
