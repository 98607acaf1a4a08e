"""nasfpn validate FILE...: check genotype and search-space files."""

from __future__ import annotations

import sys

from ..dsl import DSLError, SearchSpace, read
from ..dsl.space import format_count


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check genotype / search-space YAML files",
                       description="Prints 'FILE: ok' per valid file, or one line per problem "
                                   "(file:line: field.path: what was expected); exits 2 on any problem.")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML files or zoo names")
    p.set_defaults(run=run)


def run(args) -> int:
    failed = False
    for name in args.files:
        try:
            item = read(name)
        except DSLError as err:
            print(err, file=sys.stderr)
            failed = True
            continue
        what = f"search space, {format_count(item.size())} points" if isinstance(item, SearchSpace) else "genotype"
        print(f"{name}: ok ({what})")
    return 2 if failed else 0
