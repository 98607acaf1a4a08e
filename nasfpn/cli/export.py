"""nasfpn export: the best cell of a search (or any genotype) as YAML, .py, TorchScript or ONNX."""

from __future__ import annotations

from pathlib import Path

from ..dsl import SearchSpace, read, zoo_names
from ..dsl.assemble import size_problem
from ..dsl.limits import MAX_CHANNELS
from ..export.formats import FORMATS, export
from .common import MAX_IMAGE_SIZE, UserError, bounded_int, int_list


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export the best cell of a run (or a genotype)",
                       description="yaml: the genotype file; py: a standalone nn.Module (no nasfpn "
                                   "import); torchscript: torch.jit.script of the neck; onnx (optional "
                                   "extra): fixed input size --image-size.")
    p.add_argument("source", metavar="RUN_DIR|NAME|FILE", help="a search run directory, zoo name or genotype")
    p.add_argument("--rank", type=bounded_int(1), default=1,
                   help="which sampled neck of the run, as its leaderboard ranks them (default 1)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, metavar="PATH")
    p.add_argument("--in-channels", default="256,512,1024",
                   help="backbone widths, finest first (default 256,512,1024)")
    p.add_argument("--channels", type=bounded_int(1, MAX_CHANNELS), help="neck width (default: the genotype's)")
    p.add_argument("--image-size", type=bounded_int(8, MAX_IMAGE_SIZE), default=640,
                   help="input size for ONNX (default 640)")
    p.add_argument("--class-name", default="ExportedNeck", help="class name in the .py export")
    p.set_defaults(run=run)


def genotype_from(source: str, rank: int):
    path = Path(source)
    if path.is_dir() and not (path / "manifest.json").exists() and source not in zoo_names():
        raise UserError(f"{path}: not a search run directory (no manifest.json)")
    if path.is_dir() and (path / "manifest.json").exists():
        from ..export.report import genotype_of, ranked
        from ..search.store import read_promoted, read_trials

        records = read_trials(path)
        if not records:
            raise UserError(f"{path}: no finished trials (is this a search run directory?)")
        searched = [r for r in ranked(records, read_promoted(path)) if not r.is_baseline]
        if not 1 <= rank <= len(searched):
            raise UserError(f"{path}: --rank {rank} is out of range: {len(searched)} completed sampled necks")
        return genotype_of(searched[rank - 1])
    item = read(source)
    if isinstance(item, SearchSpace):
        raise UserError(f"{source} is a search space: export a genotype or a run directory")
    return item


def run(args) -> int:
    g = genotype_from(args.source, args.rank)
    if args.channels is not None:  # the genotype was checked at its own width
        too_large = size_problem(args.channels, g.levels, g.stem, g.cell, g.feedback)
        if too_large:
            raise UserError(f"--channels {args.channels}: the neck is {too_large}")
    out = export(g, args.format, args.out, int_list(args.in_channels), args.channels, args.image_size,
                 args.class_name)
    print(f"wrote {out} ({args.format}, {g.name})")
    return 0
