"""nasfpn show NAME|FILE: nodes, parameters and FLOPs of a neck; optionally draw its cell."""

from __future__ import annotations

from ..compile import make_plan
from ..compile.plan import describe
from ..dsl import SearchSpace, level_name, read
from ..dsl.choices import Categorical, IntRange, Permutation, Pick
from ..dsl.limits import MAX_CHANNELS
from ..dsl.space import format_count
from ..files import output_file
from ..proxy.neck_cost import neck_cost
from .common import MAX_IMAGE_SIZE, bounded_int, human, int_list, seed


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="print a neck's nodes, params and FLOPs; draw its cell",
                       description="For a search space, lists its choices and shows one sampled point.")
    p.add_argument("neck", metavar="NAME|FILE", help="zoo name (fpn, nasfpn, ...) or YAML file")
    p.add_argument("--channels", type=bounded_int(1, MAX_CHANNELS), help="neck width (default: the genotype's)")
    p.add_argument("--image-size", type=bounded_int(8, MAX_IMAGE_SIZE), default=640,
                   help="square input size for FLOPs (default 640)")
    p.add_argument("--in-channels", default="128,256,512",
                   help="backbone widths of C3,C4,... (default 128,256,512)")
    p.add_argument("--seed", type=seed, default=0, help="which point of a search space to show")
    p.add_argument("--draw", metavar="PNG", help="draw the cell (levels as rows, nodes as boxes)")
    p.set_defaults(run=run)


def _describe_space(space: SearchSpace) -> list[str]:
    lines = [f"search space {space.name}: {format_count(space.size())} points"]
    t = space.template
    for path, value in _walk(t, ""):
        if isinstance(value, Categorical):
            opts = ", ".join("-".join(o) if isinstance(o, tuple) else
                             level_name(o) if path.endswith(".level") else str(o) for o in value.options)
            lines.append(f"  {path}: one of {opts}")
        elif isinstance(value, IntRange):
            lines.append(f"  {path}: {value.low}..{value.high} step {value.step}")
        elif isinstance(value, Pick):
            k = value.k if isinstance(value.k, int) else f"{value.k.low}..{value.k.high}"
            pool = ", ".join(value.pool) if value.pool else "the pool"
            lines.append(f"  {path}: pick {k} of {pool}")
        elif isinstance(value, Permutation):
            lines.append(f"  {path}: a distinct level of {', '.join(value.levels)}")
    return lines


def _walk(value, path):
    if isinstance(value, dict):
        for k, v in value.items():
            if not k.startswith("_"):
                yield from _walk(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def run(args) -> int:
    item = read(args.neck)
    in_channels = int_list(args.in_channels)
    if isinstance(item, SearchSpace):
        print("\n".join(_describe_space(item)))
        g = item.random_sample(args.seed)
        print(f"\nsampled point (seed {args.seed}):")
    else:
        g = item
    draw = output_file(args.draw, "--draw") if args.draw else None
    plan = make_plan(g)
    width = args.channels or g.channels
    print(f"{g.name}" + (f" - {g.paper}" if g.paper else ""))
    print(f"pyramid {g.level_names[0]}..{g.level_names[-1]}, {width} channels, cell x{g.cell.repeats}"
          + (" (shared weights)" if g.cell.share_weights and g.cell.repeats > 1 else "")
          + (", SFAM aggregation" if g.cell.aggregate == "sfam" else "")
          + (f", recursive feedback x{g.feedback.steps}" if g.feedback else ""))
    print("\n".join(describe(plan)))
    if plan.pruned:
        print(f"pruned (reach no output): {', '.join(plan.pruned)}")
    cost = neck_cost(g, in_channels, width, args.image_size)
    print(f"params {human(cost['neck_params'])}, FLOPs {human(cost['neck_flops'])} at "
          f"{args.image_size}x{args.image_size} "
          f"(backbone widths {','.join(map(str, in_channels))})")
    if draw is not None:
        from ..export.draw import draw_cell
        draw_cell(g, draw)
        print(f"drew {draw}")
    return 0
