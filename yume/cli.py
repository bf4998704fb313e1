"""The `yume` command: parse arguments, call one library function, report errors plainly."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each subsystem adds its subcommands to the parser through one function, named here as "module:function".
# The modules must import nothing heavy at module level, so `yume --help` stays fast.
SUBCOMMANDS = [
]


def _inspect(args) -> int:
    from yume.inspect import describe

    print(describe(args.path))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yume", description="Yume-1.5 interactive world generation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="say what a checkpoint directory or file holds")
    p.add_argument("path", help="a model directory (Yume/Wan original or diffusers layout) or a weights file")
    p.set_defaults(func=_inspect)

    for entry in SUBCOMMANDS:
        module, func = entry.split(":")
        getattr(importlib.import_module(module), func)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # User-facing errors from the library carry their own explanation; no traceback for them.
        print(f"yume {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
