"""The report of a search run: leaderboard.md, trials.csv, pareto.png, progress.png, and the best
cell (best_cell.png, best_genotype.yaml)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..dsl import Genotype, from_yaml, load, to_yaml
from ..files import atomic_output, read_text, write_text
from ..search.errors import SearchError
from ..search.records import COMPLETE, TrialRecord
from ..search.store import WARM_START, read_manifest, read_promoted, read_trials, trials_frame
from .draw import draw_cell
from .plots import label_points, log_x_axis, merge_close, new_figure, save_figure


def ranked(records: list[TrialRecord], promoted: list[TrialRecord] = ()) -> list[TrialRecord]:
    """Completed trials, search and baseline: those trained again at the longer rung (`promoted`)
    first, by their AP there; then the others, best AP first."""
    longer = {r.name: r.ap for r in promoted if r.has_ap}
    done = [r for r in records if r.has_ap]
    return (sorted((r for r in done if r.name in longer), key=lambda r: -longer[r.name])
            + sorted((r for r in done if r.name not in longer), key=lambda r: -r.ap))


def genotype_of(record: TrialRecord) -> Genotype:
    if record.is_baseline:
        return load(record.name)
    return from_yaml(record.genotype, source=f"trials.jsonl, trial {record.name}")


def _fmt(value, scale=100.0, digits=1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.{digits}f}"


def leaderboard(records: list[TrialRecord], promoted: list[TrialRecord] = (), factor: int = 4) -> str:
    """The ranked table. Rows trained again at the longer rung come first, their Δ against the
    baseline trained there too; the others' Δ against the best baseline at the budget."""
    rows = ranked(records, promoted)
    longer = {r.name: r for r in promoted if r.has_ap}
    baselines = [r for r in rows if r.is_baseline]
    best_base = max(baselines, key=lambda r: r.ap) if baselines else None
    best_longer = next((longer[r.name] for r in baselines if r.name in longer), None)
    counts = pd.Series([r.state for r in records]).value_counts().to_dict() if records else {}
    lines = [f"Trials: {len(records)} finished ({', '.join(f'{v} {k}' for k, v in counts.items())}). "
             + (f"Best baseline: {best_base.name} at {_fmt(best_base.ap)} AP." if best_base else "")]
    if longer:
        lines.append(f"The first {len(longer)} rows were trained again with {factor}x the steps (`--promote`) and "
                     f"are ranked by that AP (`AP x{factor}`); the rest by the budget's AP.")
    extra = f" AP x{factor} |" if longer else ""
    lines += ["", f"| rank | genotype | kind | AP |{extra} Δ best baseline | APs | APm | APl | neck params (M) "
              "| neck GFLOPs | latency (ms) |", "|---|---|---|---|" + "---|" * (7 + bool(longer))]
    for rank, r in enumerate(rows, 1):
        m = r.metrics
        ident = r.name if r.is_baseline else f"{r.name} `{r.key}`"
        again = longer.get(r.name)
        if again is not None and best_longer is not None:
            delta = f"{(again.ap - best_longer.ap) * 100:+.1f}"
        else:
            delta = f"{(r.ap - best_base.ap) * 100:+.1f}" if best_base else "-"
        cell = f" {_fmt(again.ap) if again is not None else '-'} |" if longer else ""
        lines.append(f"| {rank} | {ident} | {r.kind} | {_fmt(m.AP)} |{cell} {delta} | {_fmt(m.APs)} | "
                     f"{_fmt(m.APm)} | {_fmt(m.APl)} | {_fmt(m.neck_params, 1e-6, 3)} | "
                     f"{_fmt(m.neck_flops, 1e-9, 3)} | {_fmt(m.latency_ms, 1.0, 1)} |")
    return "\n".join(lines) + "\n"


def _calibration(entry) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("tau"), (int, float)):
        return "none recorded when the search started (`nasfpn calibrate`)"
    return (f"Kendall tau {entry['tau']:.3f} against `{entry.get('reference', '?')}` over {entry.get('necks', '?')} "
            f"necks ({entry.get('report', '')})")


def random_controls(run_dir: Path, manifest: dict) -> list[str]:
    """The random searches beside this run (same runs folder, space, budget and data), each with
    the best AP its sampled trials reached."""
    args = manifest.get("args", {})
    found = []
    for other in sorted(run_dir.parent.glob("*/manifest.json")):
        if other.parent == run_dir:
            continue
        try:
            theirs = read_manifest(other.parent)
        except SearchError:
            continue
        same = (theirs["args"].get("sampler") == "random" and theirs["args"].get("data") == args.get("data")
                and theirs["space"].get("sha256") == manifest.get("space", {}).get("sha256")
                and theirs.get("budget") == manifest.get("budget"))
        if same:
            sampled = [r for r in read_trials(other.parent) if not r.is_baseline]
            best = max((r.ap for r in sampled if r.has_ap), default=float("nan"))
            found.append(f"`{other.parent.name}` (best sampled AP {_fmt(best)} in {len(sampled)} trials)")
    return found


def checklist(manifest: dict, records: list[TrialRecord], confirmation: str = "", told: int = 0,
              promoted: list[TrialRecord] = (), controls: list[str] = ()) -> str:
    """What the NAS evaluation checklists (Lindauer & Hutter, JMLR 2020) ask a result to state:
    the search's cost, seeds, sampler, the random-search control, the confirmation. `told`: the
    warm-start trials the study was told."""
    args = manifest.get("args", {})
    seconds = sum(r.duration or 0.0 for r in [*records, *promoted])
    cpus, gpus = float(args.get("cpus_per_trial", 1) or 1), float(args.get("gpus_per_trial", 0) or 0)
    budget = manifest.get("budget") or {}
    precision = budget.get("precision", "fp32")
    searched = sum(not r.is_baseline for r in records)
    lines = ["", "## Checklist", "",
             f"- search cost: {seconds / 3600:.2f} trial-hours over {len(records)} trials ({searched} sampled)"
             + (f" and {len(promoted)} trained again at the longer rung" if promoted else "") + ", "
             f"{seconds * cpus / 3600:.2f} CPU-hours" + (f", {seconds * gpus / 3600:.2f} GPU-hours" if gpus else ""),
             f"- sampler `{args.get('sampler', '?')}` (seed {args.get('seed', '?')}), trials trained with seed "
             f"{args.get('trial_seed', '?')}, backbone seed {args.get('backbone_seed', '?')}",
             f"- budget `{args.get('budget', '?')}` ({precision}, {budget.get('head', 'fcos')} head), the same "
             "pipeline for every trial, baselines included",
             "- random-search control: " + ("this run is one" if args.get("sampler") == "random" else
                                            ", ".join(controls) if controls else
                                            "none beside this run (`--sampler random` on the same space and "
                                            "budget runs one)"),
             "- warm start: " + (", ".join(f"`{w}`" for w in args["warm_start"]) + f" ({told} trial(s) told to the "
                                 "study before or beside sampling)" if args.get("warm_start") else "none"),
             "- calibration of the budget on the data: " + _calibration(manifest.get("calibration")),
             "- confirmation at the reference budget: " + (confirmation or "none yet (`nasfpn confirm RUN`)")]
    return "\n".join(lines) + "\n"


def _told(path: Path) -> int:
    """How many points warm_start.jsonl lists (each source once; a torn line is skipped)."""
    sources = set()
    for line in read_text(path).splitlines() if path.exists() else []:
        try:
            sources.add(json.loads(line)["source"])
        except (ValueError, KeyError, TypeError):
            continue
    return len(sources)


def pareto_plot(records: list[TrialRecord], path: Path) -> None:
    # a trial without a cost figure is on the leaderboard (cost "-") but has no place on this plot
    rows = [r for r in ranked(records) if r.metrics.neck_flops is not None]
    fig, ax = new_figure((7, 4.5))
    search = [r for r in rows if not r.is_baseline]
    base = [r for r in rows if r.is_baseline]
    if search:
        ax.scatter([r.metrics.neck_flops / 1e9 for r in search], [r.ap * 100 for r in search],
                   s=18, alpha=0.7, label="sampled necks")
        front, best = [], -1.0
        for r in sorted(search, key=lambda r: r.metrics.neck_flops):
            if r.ap > best:
                front.append(r)
                best = r.ap
        ax.step([r.metrics.neck_flops / 1e9 for r in front], [r.ap * 100 for r in front], where="post",
                color="C0", lw=1, alpha=0.6, label="Pareto front")
    points = [(r.name, r.metrics.neck_flops / 1e9, r.ap * 100) for r in base]
    if points:
        ax.scatter([x for _, x, _ in points], [y for _, _, y in points], marker="*", s=120, color="C3", zorder=3)
    label_points(ax, points, color="C3")
    log_x_axis(ax)
    ax.set_xlabel("neck GFLOPs (log scale)")
    ax.set_ylabel("AP (%)")
    ax.set_title("AP vs FLOPs (stars: hand-designed necks)", fontsize=10)
    ax.grid(alpha=0.3)
    if search:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def progress_plot(records: list[TrialRecord], path: Path) -> None:
    search = [r for r in records if not r.is_baseline]
    fig, ax = new_figure((7, 4.5))
    best, xs, ys = float("-inf"), [], []
    for i, r in enumerate(search, 1):
        if r.has_ap:
            best = max(best, r.ap)
        if best > float("-inf"):
            xs.append(i)
            ys.append(best * 100)
    ax.step(xs, ys, where="post", label="best sampled so far")
    done = [(i, r) for i, r in enumerate(search, 1) if r.state == COMPLETE]
    ax.scatter([i for i, _ in done], [r.ap * 100 for _, r in done], s=10, alpha=0.5, label="trial AP")
    baselines = [(r.name, r.ap * 100) for r in ranked([r for r in records if r.is_baseline])]
    for k, (_, y) in enumerate(baselines):
        ax.axhline(y, color=f"C{(k % 8) + 1}", ls="--", lw=1)
    for names, y in merge_close(baselines, gap=1.2):
        ax.text(max(len(search), 1), y, f" {names}", fontsize=7, va="center")
    ax.set_xlabel("search trial (in finishing order)")
    ax.set_ylabel("AP (%)")
    ax.set_title("best AP so far (dashed: hand-designed necks)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def write_report(run_dir: Path) -> dict[str, Path]:
    run_dir = Path(run_dir)
    records = read_trials(run_dir)
    out = {"leaderboard": run_dir / "leaderboard.md", "trials": run_dir / "trials.csv",
           "pareto": run_dir / "pareto.png", "progress": run_dir / "progress.png"}
    confirmed = run_dir / "confirm" / "confirm.md"
    verdict = confirmed.read_text().splitlines()[2] if confirmed.exists() else ""
    try:
        manifest = read_manifest(run_dir)
    except SearchError:  # a report is still written for a run whose manifest is damaged
        manifest = {}
    told = _told(run_dir / WARM_START)
    promoted = read_promoted(run_dir)
    factor = manifest.get("args", {}).get("promote_factor", 4)
    write_text(out["leaderboard"],
               leaderboard(records, promoted, factor)
               + checklist(manifest, records, verdict, told, promoted, random_controls(run_dir, manifest)))
    with atomic_output(out["trials"]) as tmp:
        trials_frame(records).to_csv(tmp, index=False)
    pareto_plot(records, out["pareto"])
    progress_plot(records, out["progress"])
    best = [r for r in ranked(records, promoted) if not r.is_baseline]
    if best:
        g = genotype_of(best[0])
        out["best_genotype"] = run_dir / "best_genotype.yaml"
        write_text(out["best_genotype"], to_yaml(g))
        out["best_cell"] = draw_cell(g, run_dir / "best_cell.png",
                                     title=f"best cell {best[0].name}: AP {best[0].ap * 100:.1f}")
    return out
