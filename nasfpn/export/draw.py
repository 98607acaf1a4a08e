"""Draw a cell the way the NAS-FPN paper does: pyramid levels as rows (finest on top), the
cell's inputs in the first column, then one column per node in build order; each node is a box
marked with its op, edges coloured by how they resample, outputs outlined in bold."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..compile.plan import make_plan
from ..dsl.schema import Genotype, Node, level_name
from ..ops.registry import get
from .plots import new_figure, save_figure

_EDGE_COLOR = {"up": "#1f77b4", "down": "#d62728", "same": "#555555"}
_OUT_COLOR, _NODE_COLOR, _INPUT_COLOR, _STEM_COLOR = "#ffe9a8", "#dbe9f6", "#eeeeee", "#e3f2d9"


def _op_label(node: Node) -> str:
    """The registry's labels: the post-ops of a node that does not merge (paper: R-C-B), else
    its block, fusion or combine op."""
    if node.block is None and len(node.inputs) == 1:
        return "-".join(get("post", op).label for op in node.post) or "id"
    if node.block is not None:
        return get("block", node.block).label
    if node.fusion != "none":
        return get("fusion", node.fusion).label
    return get("combine", node.combine).label


def draw_cell(g: Genotype, path: str | Path, title: str | None = None) -> Path:
    plan = make_plan(g)
    row = {lv: i for i, lv in enumerate(g.levels)}
    pos: dict[str, tuple[float, float]] = {name: (0.0, row[lv]) for name, lv in zip(g.level_names, g.levels)}
    live = list(plan.stem) + list(plan.cell)
    for col, p in enumerate(live, start=1):
        pos[p.name] = (float(col), row[p.node.level])
    level_of = {**dict(zip(g.level_names, g.levels)), **{p.name: p.node.level for p in live}}

    width = max(6.0, 1.25 * (len(live) + 1) + 1.5)
    fig, ax = new_figure((width, 1.0 * len(g.levels) + 2.0))
    box_w, box_h = 0.62, 0.5

    def box(name: str, label: str, color: str, bold: bool) -> None:
        x, y = pos[name]
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.02", fc=color, ec="black",
                                    lw=2.4 if bold else 0.8, zorder=3))
        ax.text(x, y, label, ha="center", va="center", fontsize=8, zorder=4)

    def edge(src: str, dst: str, dashed: bool) -> None:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        kind = "same" if level_of[src] == level_of[dst] else ("up" if level_of[src] > level_of[dst] else "down")
        # long edges arc towards the middle rows so they stay inside the axes
        middle = (len(g.levels) - 1) / 2
        bend = 0.0 if abs(x1 - x0) <= 1.01 else (0.25 if (y0 + y1) / 2 <= middle else -0.25)
        ax.add_patch(FancyArrowPatch((x0 + box_w / 2, y0), (x1 - box_w / 2, y1),
                                     connectionstyle=f"arc3,rad={bend}", arrowstyle="-|>",
                                     mutation_scale=9, color=_EDGE_COLOR[kind], lw=1.1,
                                     ls="--" if dashed else "-", zorder=2, alpha=0.85))

    for name in g.level_names:
        box(name, f"{name} in", _INPUT_COLOR, False)
    for p in live:
        for src in p.input_names:
            edge(src, p.name, dashed=False)
        for src in p.unused_names:
            edge(src, p.name, dashed=True)
    for p in live:
        color = _STEM_COLOR if p.name.startswith("s") else (_OUT_COLOR if p.node.output else _NODE_COLOR)
        box(p.name, f"{p.name}\n{_op_label(p.node)}", color, p.node.output)

    ax.set_yticks(range(len(g.levels)), [level_name(lv) for lv in g.levels])
    ax.set_xticks(range(len(live) + 1), ["inputs"] + [p.name for p in live], fontsize=7)
    ax.set_xlim(-0.7, len(live) + 0.7)
    ax.set_ylim(len(g.levels) - 0.4, -0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    stack = f"cell x{g.cell.repeats}" + (" (shared)" if g.cell.share_weights and g.cell.repeats > 1 else "")
    extra = ", pruned " + ", ".join(plan.pruned) if plan.pruned else ""
    ax.set_title(title or f"{g.name}: {stack}{extra}", fontsize=10)
    legend = [Line2D([], [], color=_EDGE_COLOR["up"], label="upsample"),
              Line2D([], [], color=_EDGE_COLOR["down"], label="downsample"),
              Line2D([], [], color=_EDGE_COLOR["same"], label="same level"),
              Line2D([], [], color="#555555", ls="--", label="unused, summed in"),
              Line2D([], [], marker="s", ls="", mfc=_OUT_COLOR, mec="black", mew=2, label="output")]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5, fontsize=7,
              frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
