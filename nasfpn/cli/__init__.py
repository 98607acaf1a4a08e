"""The `nasfpn` command: one subcommand per job. User mistakes end with one clear line per
problem on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import sys

from ..errors import NasfpnError
from . import baselines, calibrate, confirm, export, report, search, show, train, validate

COMMANDS = [validate, show, train, baselines, calibrate, search, confirm, report, export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasfpn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except NasfpnError as err:
        print(err if err.located else f"nasfpn {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"nasfpn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
