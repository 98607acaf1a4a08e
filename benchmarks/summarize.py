"""Write benchmarks/README.md from the committed results.

Reads what the benchmark scripts wrote to benchmarks/results/ (their .md summaries, and the CSVs
for a few figures derived here), plus the committed runs the README cites (runs/baselines/,
runs/nasfpn-60/, runs/search_efficiency*/). Only current figures: a result file named
NAME.YYYY-MM-DD.* is an earlier measurement kept for CHANGELOG.md and is left out. A result
summary in results/ that no section below takes is an error, so a new benchmark cannot be
forgotten here. Rank statistics are nasfpn's (`nasfpn.export.ranking`), as the benchmarks' own.

    python benchmarks/summarize.py            # rewrite benchmarks/README.md
    python benchmarks/summarize.py --check    # exit 1 if benchmarks/README.md is not what the results give
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import statistics
import sys
from pathlib import Path

from nasfpn.export.ranking import kendall_tau

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = HERE / "README.md"
DATED = re.compile(r"\.\d{4}-\d{2}-\d{2}$")
ZOO = ("augfpn", "bifpn", "fpn", "mlfpn", "nasfpn", "nasfpn-proxy", "pafpn", "rfp")


class MissingResult(Exception):
    pass


def _read(path: Path) -> str:
    if not path.is_file():
        raise MissingResult(f"{path.relative_to(ROOT)}: missing")
    return path.read_text()


def _body(path: Path) -> list[str]:
    """A result summary without its own top heading (the section gives one)."""
    lines = _read(path).rstrip("\n").splitlines()
    if lines and lines[0].startswith("#"):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return lines


def _rel(path: Path) -> str:
    """The path as a link from benchmarks/README.md."""
    return (path.relative_to(HERE) if path.is_relative_to(HERE) else Path("..") / path.relative_to(ROOT)).as_posix()


def _files(*paths: Path) -> str:
    return "Files: " + ", ".join(f"[`{p.relative_to(ROOT).as_posix()}`]({_rel(p)})" for p in paths if p.exists()) + "."


def _image(path: Path, alt: str) -> list[str]:
    return [f"![{alt}]({_rel(path)})"] if path.exists() else []


def discordant_pairs(a: dict[str, float], b: dict[str, float]) -> tuple[int, int]:
    names = [n for n in a if n in b]
    pairs = list(itertools.combinations(names, 2))
    return sum((a[x] - a[y]) * (b[x] - b[y]) < 0 for x, y in pairs), len(pairs)


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# -- the fidelity runs: which backbone is which (as proxy_fidelity.py letters them) -------------------

def _fidelity() -> dict:
    rows = _csv(RESULTS / "proxy_fidelity.csv")
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    letter = {b: chr(ord("A") + i) for i, b in enumerate(backbones)}

    def by(budget: str, backbone: str, init: str) -> dict[str, float]:
        return {r["neck"]: float(r["AP"]) for r in rows if r["budget"] == budget and r["backbone"] == backbone
                and r["neck_init"] == init and r["seed"] == "0"}

    # The proxy's neck init, as proxy_fidelity.py named it in its summary ("`proxy`: ..., neck init `X`").
    found = re.search(r"`proxy`: [^;]*neck init `(\w+)`", _read(RESULTS / "proxy_fidelity.md"))
    if not found:
        raise MissingResult("results/proxy_fidelity.md: no neck init of the proxy in its first line")
    proxy_init = found.group(1)
    main = max(backbones, key=lambda b: len(by("proxy", b, proxy_init)))
    full: dict[str, float] = {}
    for b in [main] + [b for b in backbones if b != main]:  # full AP on the proxy's backbone first
        for n, ap in by("full", b, "default").items():
            full.setdefault(n, ap)
    return {"rows": rows, "backbones": backbones, "letter": letter, "by": by, "main": main,
            "proxy_init": proxy_init, "full": full}


def derived_fidelity(fid: dict) -> list[str]:
    by, main, letter, full = fid["by"], fid["main"], fid["letter"], fid["full"]
    proxy = by("proxy", main, fid["proxy_init"])
    d, n = discordant_pairs(proxy, full)
    lines = [f"- proxy on backbone {letter[main]} vs full: {d} discordant pairs of {n}"]
    for b1, b2 in itertools.combinations(fid["backbones"], 2):  # the same init on two machines
        a, c = by("proxy", b1, "default"), by("proxy", b2, "default")
        names = [x for x in a if x in c]
        if len(names) >= 3:
            tau = kendall_tau([a[x] for x in names], [c[x] for x in names])
            diff = statistics.mean(abs(a[x] - c[x]) for x in names) * 100
            lines.append(f"- between machines: proxy (neck init `default`) on backbone {letter[b1]} vs on "
                         f"{letter[b2]}, {len(names)} necks: Kendall tau **{tau:.3f}**, mean |difference| "
                         f"{diff:.2f} AP points")
    return lines


def derived_steps(fid: dict) -> list[str]:
    rows = _csv(RESULTS / "proxy_steps.csv")
    lines = []
    for schedule in dict.fromkeys(r["schedule"] for r in rows):
        runs = [r for r in rows if r["schedule"] == schedule and r["neck_init"] == fid["proxy_init"]]
        seed0 = {r["neck"]: float(r["AP"]) for r in runs if r["seed"] == "0"}
        fpn = [float(r["AP"]) for r in runs if r["neck"] == "fpn"]
        zoo = [seed0[n] for n in ZOO if n in seed0]
        if len(fpn) < 2 or len(zoo) < len(ZOO):
            continue
        d, n = discordant_pairs(seed0, fid["full"])
        seed_std, spread = statistics.stdev(fpn) * 100, statistics.stdev(zoo) * 100
        lines.append(f"- {schedule} (neck init `{fid['proxy_init']}`) vs full: {d} discordant pairs of {n}; fpn over "
                     f"{len(fpn)} seeds: std **{seed_std:.2f}** AP points; across the {len(zoo)} zoo necks: std "
                     f"{spread:.2f}; spread / seed std = **{spread / seed_std:.1f}**")
    return lines


# -- sections -----------------------------------------------------------------------------------------

def compile_overhead() -> list[str]:
    md = RESULTS / "compile_overhead.md"
    return ["## Compile overhead", "",
            "Compiled necks against hand-written ones (goal: at most 1.05x). The hand-written references "
            "are `tests/reference_necks.py`, the modules the equivalence tests check the compiled necks "
            "against to 1e-5.", "",
            *_body(md), "", _files(md, RESULTS / "compile_overhead.csv")]


def _section(title: str, intro: str, md: Path, *data: Path) -> list[str]:
    """A section that is one result summary under its heading and intro, and its files."""
    return [f"## {title}", "", intro, "", *_body(md), "", _files(md, *data)]


def proxy_speed() -> list[str]:
    return _section("Proxy speed", "One proxy trial, timed part by part (goal: at most 60 s on 2 CPU threads). "
                    "The trial reuses the one-time preparation, which the script times as well.",
                    RESULTS / "proxy_speed.md")


def data_pipeline() -> list[str]:
    return _section("Data pipeline", "COCO-format data streamed by DataLoader workers at 512 px: memory against the "
                    "number of images (goal: flat, 20,000 / 2,000 at most 1.2x, under 4 GB), the loader against "
                    "what training consumes, the time to the first step.", RESULTS / "data_pipeline.md",
                    RESULTS / "data_pipeline.jsonl")


def real_photos() -> list[str]:
    return _section("Real photos", "The streamed pipeline and a ResNet-18 on photographs that ship in a Debian "
                    "package, with exact boxes: a check that training learns on real images, not a benchmark "
                    "of necks.", RESULTS / "real_photos.md")


def precision() -> list[str]:
    md = RESULTS / "precision.md"
    return _section("Precision", "fp32 against bf16 autocast on this CPU (AVX512-BF16) at the proxy budget: whole "
                    "trials (goal: bf16 at least 1.5x faster), the zoo's ranking (goal: Kendall tau at least 0.85, "
                    "each AP within 2 seed std), training FLOP/s against matmul FLOP/s of each precision, the "
                    "layers bf16 does not pay on, channels-last. An earlier run is kept beside it.", md,
                    RESULTS / "precision.jsonl", RESULTS / "precision.2026-12-01.md")


def device_check() -> list[str]:
    md = RESULTS / "device_check.md"
    if not md.exists():
        return ["## Device check", "", "`bash benchmarks/device_check.sh` on a machine with an NVIDIA GPU: CUDA tests, "
                "smoke and proxy trials on `cuda` in fp32 and AMP, a 4-trial search on half a GPU per trial. It has "
                "not run yet: no GPU was lent to the sessions that wrote this."]
    return _section("Device check", "`bash benchmarks/device_check.sh` on a machine with an NVIDIA GPU.", md)


def baselines() -> list[str]:
    md = ROOT / "runs" / "baselines" / "table.md"
    return ["## Baselines", "",
            "The hand-designed necks at the `proxy` budget, each scored by the same proxy: "
            "`nasfpn baselines --budget proxy --seeds 3 --threads 2 --out runs/baselines`. Neck FLOPs at the "
            "proxy's 128-pixel input and 64-channel width; latency of the whole detector at batch 1.", "",
            *_body(md), "", *_image(ROOT / "runs" / "baselines" / "ap_vs_flops.png", "AP vs FLOPs"), "",
            _files(md, ROOT / "runs" / "baselines" / "table.csv")]


SEARCH = ROOT / "runs" / "nasfpn-60"


def search() -> list[str]:
    """The committed search: its leaderboard cut to the baselines and the best sampled necks, its
    checklist, and the confirmation at the reference budget where one has been run."""
    manifest = json.loads(_read(SEARCH / "manifest.json"))
    versions, args = manifest["versions"], manifest["args"]
    board = _body(SEARCH / "leaderboard.md")
    cut = board.index("## Checklist") if "## Checklist" in board else len(board)
    board, check = board[:cut], [ln for ln in board[cut + 1:] if ln.strip()]
    head = [ln for ln in board if not ln.startswith("|")]
    table = [ln for ln in board if ln.startswith("|")]
    kept, sampled = table[:2], 0
    for ln in table[2:]:  # every baseline, and the three best sampled necks
        kind = [c.strip() for c in ln.strip("|").split("|")][2]
        if kind == "baseline" or sampled < 3:
            kept.append(ln)
            sampled += kind != "baseline"
    confirm = SEARCH / "confirm" / "confirm.md"
    confirmed = (["### Confirmed at the reference budget", "",
                  f"`nasfpn confirm {SEARCH.relative_to(ROOT).as_posix()} --top 1 --baselines mlfpn,nasfpn-proxy "
                  "--budget full "
                  "--set head=fcos --seeds 3` (full under fcos: the reference the proxy was calibrated against):", "",
                  *_body(confirm), "", _files(confirm)]
                 if confirm.exists() else [])
    return [f"## A {args['trials']}-trial search", "",
            f"`{' '.join(['nasfpn', *manifest['command'][1:]])}` (sampler `{args['sampler']}`, budget "
            f"`{args['budget']}`, {args['cpus_per_trial']} CPU thread per trial, the "
            f"{len(args['baselines'])} zoo necks as reference trials in the same run; "
            f"{manifest['created'][:10]}, nasfpn {versions['nasfpn']}, torch {versions['torch']}, "
            f"ray {versions['ray']}, optuna {versions['optuna']}). The baselines and the "
            "three best sampled necks of the leaderboard:", "",
            *[ln for ln in head if ln.strip()], "", *kept, "", *(["Its checklist:", "", *check, ""] if check else []),
            *_image(SEARCH / "progress.png", "search progress"), "",
            _files(SEARCH / "leaderboard.md", SEARCH / "trials.csv", SEARCH / "best_genotype.yaml"), "",
            *confirmed]


def proxy_fidelity(fid: dict) -> list[str]:
    md = RESULTS / "proxy_fidelity.md"
    return ["## Proxy fidelity", "",
            "Does the proxy rank necks as a 10x longer training does? Run as single-thread processes that "
            "append to one CSV and resume from it, each taking its share: "
            "`python benchmarks/proxy_fidelity.py --threads 1 --budgets proxy --shard 0/2` and `... --shard 1/2` "
            "side by side; the `full` runs likewise, e.g. `python benchmarks/proxy_fidelity.py --threads 1 "
            "--budgets full --necks fusion_space-0,pafpn`.", "",
            *_body(md), "", *_image(RESULTS / "proxy_fidelity.png", "proxy vs full"), "",
            "Derived from `results/proxy_fidelity.csv` by this script:", "", *derived_fidelity(fid), "",
            _files(md, RESULTS / "proxy_fidelity.csv")]


def proxy_steps(fid: dict) -> list[str]:
    md = RESULTS / "proxy_steps.md"
    return ["## Proxy schedules", "",
            "Proxy AP against the length and shape of the schedule, to see what the short proxy lacks. "
            "Run as processes that each name their share of the necks, e.g. `python benchmarks/proxy_steps.py "
            "--threads 1 --schedules 600x32 --necks fpn,nasfpn-proxy,mlfpn` and `... --necks fpn --seed S` "
            "for the seeds of fpn; `--neck-init default` for the runs at PyTorch's default init.", "",
            *_body(md), "", *_image(RESULTS / "proxy_steps.png", "proxy AP by schedule"), "",
            "Derived from `results/proxy_steps.csv` (against the `full` APs of `results/proxy_fidelity.csv`) "
            "by this script:", "", *derived_steps(fid), "",
            _files(md, RESULTS / "proxy_steps.csv")]


def search_efficiency() -> list[str]:
    """The samplers compared under the proxy preset as it is, then under the fcos head it had before
    (results/search_efficiency_fcos.*, runs/search_efficiency-fcos/), each where it has results."""
    out = ["## Search efficiency", "",
           "Random search, TPE and regularized evolution on `nasfpn_space` at the proxy budget (bf16, "
           "pass-through neck init). The first 10 trials of random search and TPE are identical by design: TPE "
           "starts with Optuna's 10 random start-up trials, drawn from the same seed; evolution draws its first "
           "10 (its population) itself.", ""]
    for tag, runs_dir in (("", "search_efficiency"), ("_fcos", "search_efficiency-fcos")):
        md = RESULTS / f"search_efficiency{tag}.md"
        runs = sorted(p for p in (ROOT / "runs" / runs_dir).glob("*") if (p / "trials.jsonl").is_file())
        if not md.exists() and not runs:
            continue
        created = sorted({json.loads(_read(p / "manifest.json"))["created"][:10] for p in runs})
        out += [f"Runs of {', '.join(created) or 'none yet'} in `runs/{runs_dir}/`:", "", *_body(md), "",
                *_image(md.with_suffix(".png"), "best AP by trial"), "", _files(md, md.with_suffix(".csv")), ""]
    return out + ["Ray/Optuna overhead per trial, now that Tune reuses its actors: "
                  "`python benchmarks/trial_overhead.py --trials 10 --compare runs/search_efficiency-fcos/random-s0` "
                  "prints it (it writes no result file; the last measurement is in "
                  "[docs/search.md](../docs/search.md))."]


def roi_align() -> list[str]:
    return _section("RoIAlign", "faster_rcnn's RoIAlign, written in plain torch as two matrix products per image, "
                    "against a direct per-RoI computation of the same definition: agreement and speed.",
                    RESULTS / "roi_align.md")


def heads() -> list[str]:
    md = RESULTS / "heads.md"
    if not md.exists():
        return ["## Heads", "", "The zoo under each head (`python benchmarks/heads.py --seeds 3`): not measured yet."]
    return _section("Heads", "The zoo's baselines under fcos, retina, faster_rcnn and cornernet at the proxy "
                    "budget: how far the rankings agree across heads, which necks move, what a trial costs.",
                    md, RESULTS / "heads.csv", RESULTS / "heads_timing.jsonl")


def render() -> str:
    fid = _fidelity()
    sections = [compile_overhead(), proxy_speed(), precision(), device_check(), data_pipeline(), real_photos(),
                baselines(), search(),
                proxy_fidelity(fid), proxy_steps(fid), search_efficiency(), heads(), roi_align()]
    taken = {"compile_overhead", "proxy_speed", "precision", "device_check", "data_pipeline", "real_photos",
             "proxy_fidelity", "proxy_steps",
             "search_efficiency", "search_efficiency_fcos", "heads", "roi_align"}
    stray = sorted(p.name for p in RESULTS.glob("*.md") if p.stem not in taken and not DATED.search(p.stem))
    if stray:
        raise MissingResult(f"no section of benchmarks/summarize.py takes {', '.join(stray)}")
    titles = [s[0][3:] for s in sections]
    toc = [f"- [{t}](#{t.lower().replace(' ', '-').replace('/', '')})" for t in titles]
    head = ["# Benchmark results", "",
            "<!-- Generated by `python benchmarks/summarize.py` from benchmarks/results/ and the committed runs; "
            "do not edit by hand. -->", "",
            "Current figures only, each with the command that measures it; what changed when is in "
            "[CHANGELOG.md](../CHANGELOG.md). Measured on the project's development machines (2 CPU cores, "
            "x86_64, no GPU, torch 2.13.0+cpu), which differ from session to session: figures of one file "
            "compare exactly, across files only roughly. Each script writes its results to `results/`; "
            "`python benchmarks/summarize.py` then rewrites this page.", "", *toc]
    out = head
    for s in sections:
        out += [""] + s
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with benchmarks/README.md, write nothing")
    args = parser.parse_args(argv)
    try:
        text = render()
    except MissingResult as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if README.exists() and README.read_text() == text:
            print("benchmarks/README.md is up to date")
            return 0
        print("benchmarks/README.md differs from the results: run python benchmarks/summarize.py", file=sys.stderr)
        return 1
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(README)
    print(f"wrote {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
