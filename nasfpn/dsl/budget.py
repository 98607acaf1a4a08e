"""Training budgets as data: `budgets/*.yaml` (the presets) or a user's file, read by the DSL's
YAML reader and validated field by field, errors located as `file:line: field: message`.

A budget file is one flat mapping of the fields below; `base: NAME|FILE` starts from another
budget (a preset, or a file beside this one) and the file's keys override it. `--set key=value`
overrides a field after the file: the value is read as the field's type (`--set lr=1e-3`,
`--set jitter=0.5,1.5`, `--set backbone_weights=/data/resnet50.pth`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import DSLError, Problem, describe, did_you_mean, line_of
from .yaml_reader import load_yaml

BACKBONES = ("proxy", "resnet18", "resnet34", "resnet50")
BACKBONE_MODES = ("cached", "frozen", "train")  # frozen + features cached on disk / frozen, run live / trained
SCHEDULES = ("cosine", "constant")              # after the linear warmup
AUGMENTS = ("none", "flip", "jitter", "flip+jitter")
NECK_INITS = ("default", "passthrough")         # PyTorch's init; every merge starts as a pass-through
PRECISIONS = ("auto", "fp32", "bf16", "fp16")    # auto: bf16 where the device has it natively, else fp32
HEADS = ("fcos", "retina", "faster_rcnn", "cornernet")  # proxy/heads/: one module each
ANCHORS = (1, 3, 6, 9)                          # per location: 1 or 3 aspect ratios x 1, 2 or 3 octave scales
BOX_LOSSES = ("smooth_l1", "giou")              # of anchor-based box regression (fcos regresses with giou)
NMS_KINDS = ("hard", "soft")                    # soft: Gaussian Soft-NMS
ROI_LEVELS = ("fpn", "adaptive_max", "soft")    # FPN's level mapping, PANet's adaptive pooling, AugFPN's soft selection
MAX_BASE_DEPTH = 4


@dataclass(frozen=True, eq=False)
class Budget:
    """Two budgets are equal when they train the same way: equal `as_dict()`."""

    name: str
    image_size: int = 128          # the long side; aspect ratio kept, padded to the coarsest stride
    train_images: int = 16384      # a deterministic subset of the train split (all, when fewer)
    val_images: int = 512
    batch: int = 16
    steps: int = 600               # optimizer steps of neck + head
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup: int = 50
    width: int = 64                # the neck's channels (every neck scored at one width)
    head_depth: int = 2            # convs in each head tower
    backbone: str = "proxy"
    backbone_weights: str = ""     # a torchvision-style state_dict file; empty: pretrain here
    backbone_mode: str = "cached"
    backbone_steps: int = 3000     # pretraining when no weights are given (once per data and seed)
    backbone_warmup: int = 50
    backbone_lr_scale: float = 0.1  # the backbone's lr against `lr`, when backbone_mode is train
    augment: str = "none"
    jitter: tuple[float, float] = (0.8, 1.25)  # scale-jitter range of the long side
    evals: int = 4                 # evaluation points (for early stopping); the last is at `steps`
    neck_init: str = "default"
    precision: str = "fp32"        # autocast of the trial's forward pass (proxy/precision.py)
    # the head the necks are scored under (proxy/heads/); see HEAD_FIELDS for when each is recorded
    head: str = "fcos"
    anchors: int = 9
    anchor_scale: float = 4.0      # the smallest anchor's side in strides of its level (RetinaNet's 4)
    box_loss: str = "smooth_l1"
    nms: str = "hard"
    nms_sigma: float = 0.5         # Soft-NMS: scores decay by exp(-IoU^2 / sigma)
    roi_levels: str = "fpn"
    roi_canonical: float = 224.0   # FPN's mapping: a box of this side goes to P4
    proposals: int = 1000          # faster_rcnn: RoIs per image after the RPN's NMS (of twice as many)
    consistent_supervision: bool = False
    supervision_weight: float = 0.25  # of the auxiliary losses on the laterals

    @property
    def end_to_end(self) -> bool:
        return self.backbone_mode == "train"

    @property
    def augments(self) -> tuple[str, ...]:
        return () if self.augment == "none" else tuple(self.augment.split("+"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Budget) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:  # equal budgets have equal recorded fields
        return hash(tuple(sorted(self.as_dict())))

    def as_dict(self) -> dict:
        """Every field that decides how a neck trains: of the head's fields, those its head reads,
        and `head`, `nms` and `consistent_supervision` only where they are not what every budget
        was before they existed, so that budgets of the same effect (and older records) compare
        equal."""
        out = asdict(self)
        out["jitter"] = list(self.jitter)
        for key, used in HEAD_FIELDS.items():
            if not used(self) or (key in _IMPLIED and out[key] == getattr(Budget, key)):
                del out[key]
        return out


_anchored: Callable[[Budget], bool] = lambda b: b.head in ("retina", "faster_rcnn")  # noqa: E731
_IMPLIED = ("head", "nms", "consistent_supervision")
HEAD_FIELDS: dict[str, Callable[[Budget], bool]] = {
    "head": lambda b: True,
    "anchors": _anchored,
    "anchor_scale": _anchored,
    "box_loss": _anchored,
    "nms": lambda b: True,
    "nms_sigma": lambda b: b.nms == "soft",
    "roi_levels": lambda b: b.head == "faster_rcnn",
    "roi_canonical": lambda b: b.head == "faster_rcnn" and b.roi_levels == "fpn",
    "proposals": lambda b: b.head == "faster_rcnn",
    "consistent_supervision": lambda b: True,
    "supervision_weight": lambda b: b.consistent_supervision,
}


@dataclass(frozen=True)
class Field:
    about: str
    read: Callable[[Any], Any]   # raises ValueError with the message


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(f"expected an integer in {low}..{high}, got {describe(value)}") from None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected an integer in {low}..{high}, got {describe(value)}")
        return value
    return read


def _number(low: float, high: float, positive: bool = False) -> Callable[[Any], float]:
    span = f"{'above' if positive else 'at least'} {low:g} and at most {high:g}"

    def read(value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError(f"expected a number {span}, got {describe(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number {span}, got {describe(value)}")
        value = float(value)
        if not math.isfinite(value) or value < low or value > high or (positive and value == low):
            raise ValueError(f"expected a number {span}, got {value!r}")
        return value
    return read


def _choice(options: Sequence[str]) -> Callable[[Any], str]:
    def read(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"unknown value {describe(value)}" + did_you_mean(value, options))
        return value
    return read


def _flag(value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def _anchor_count(value: Any) -> int:
    count = _integer(1, 9)(value)
    if count not in ANCHORS:
        raise ValueError(f"expected one of {', '.join(map(str, ANCHORS))} anchors per location, got {count}")
    return count


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 4096 or "\0" in value:
        raise ValueError(f"expected a path or nothing, got {describe(value)}")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 100 or not value.replace("-", "").replace(
            "_", "").replace(".", "").isalnum():
        raise ValueError(f"expected a name of letters, digits, '.', '_' and '-', got {describe(value)}")
    return value


def _range(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"expected two numbers [low, high], got {describe(value)}")
    low, high = (_number(0.1, 10.0, positive=False)(v) for v in value)
    if low > high:
        raise ValueError(f"expected [low, high] with low <= high, got [{low:g}, {high:g}]")
    return (low, high)


FIELDS: dict[str, Field] = {
    "name": Field("the budget's name, recorded with every result", _name),
    "image_size": Field("long side of the images in pixels (aspect ratio kept, padded to a multiple of the "
                        "coarsest stride)", _integer(32, 4096)),
    "train_images": Field("train images used: a deterministic subset (all, when the split has fewer)",
                          _integer(1, 100_000_000)),
    "val_images": Field("val images scored: a deterministic subset", _integer(1, 100_000_000)),
    "batch": Field("images per optimizer step", _integer(1, 4096)),
    "steps": Field("optimizer steps of neck and head", _integer(1, 100_000_000)),
    "lr": Field("peak learning rate (AdamW)", _number(0.0, 10.0, positive=True)),
    "schedule": Field(f"after the warmup: {' | '.join(SCHEDULES)}", _choice(SCHEDULES)),
    "warmup": Field("linear warmup steps", _integer(0, 100_000_000)),
    "width": Field("the neck's channels", _integer(1, 2048)),
    "head_depth": Field("convs in each head tower", _integer(0, 16)),
    "backbone": Field(f"{' | '.join(BACKBONES)}", _choice(BACKBONES)),
    "backbone_weights": Field("state_dict file with torchvision's key names (empty: pretrain here)", _text),
    "backbone_mode": Field("cached (frozen, features cached on disk) | frozen (run live) | train (end to end)",
                           _choice(BACKBONE_MODES)),
    "backbone_steps": Field("pretraining steps when no weights are given", _integer(0, 100_000_000)),
    "backbone_warmup": Field("warmup steps of the pretraining", _integer(0, 100_000_000)),
    "backbone_lr_scale": Field("the backbone's lr against lr, in train mode", _number(0.0, 10.0)),
    "augment": Field(f"{' | '.join(AUGMENTS)} (needs the images: not with backbone_mode cached)",
                     _choice(AUGMENTS)),
    "jitter": Field("scale-jitter range of the long side, [low, high]", _range),
    "evals": Field("evaluation points (early stopping); the last is at steps", _integer(1, 1000)),
    "neck_init": Field(f"{' | '.join(NECK_INITS)}", _choice(NECK_INITS)),
    "precision": Field(f"{' | '.join(PRECISIONS)}: autocast of the trial's forward pass (auto: bf16 on a CPU "
                       "or GPU that computes it natively, else fp32 on a CPU and fp16 on a GPU; fp16 needs CUDA)",
                       _choice(PRECISIONS)),
    "head": Field(f"{' | '.join(HEADS)}: the detection head every neck is scored under", _choice(HEADS)),
    "anchors": Field("anchors per location, retina and faster_rcnn: 1 | 3 (ratios 1:2, 1:1, 2:1) | 6 | 9 "
                     "(x 2 or 3 octave scales)", _anchor_count),
    "anchor_scale": Field("the smallest anchor's side in strides of its level (retina, faster_rcnn)",
                          _number(0.0, 64.0, positive=True)),
    "box_loss": Field(f"{' | '.join(BOX_LOSSES)}: box regression of retina and faster_rcnn", _choice(BOX_LOSSES)),
    "nms": Field(f"{' | '.join(NMS_KINDS)}: duplicate removal of the detections (soft: Gaussian Soft-NMS)",
                 _choice(NMS_KINDS)),
    "nms_sigma": Field("Soft-NMS: a score decays by exp(-IoU^2 / sigma)", _number(0.0, 10.0, positive=True)),
    "roi_levels": Field("faster_rcnn, where a RoI is pooled from: fpn (one level, k = floor(4 + log2(sqrt(wh) / "
                        "roi_canonical))) | adaptive_max (every level, max-fused: PANet) | soft (every level, "
                        "fused with learned weights: AugFPN)", _choice(ROI_LEVELS)),
    "roi_canonical": Field("faster_rcnn with roi_levels fpn: the box side mapped to P4 (FPN: 224 on 800-pixel "
                           "images)", _number(1.0, 10000.0)),
    "proposals": Field("faster_rcnn: proposals per image the RPN keeps after its NMS (of twice as many "
                       "candidates)", _integer(1, 100_000)),
    "consistent_supervision": Field("auxiliary detection losses on the neck's laterals, summed with the main "
                                    "loss before the one backward (AugFPN)", _flag),
    "supervision_weight": Field("the weight of the auxiliary losses", _number(0.0, 10.0, positive=True)),
}
assert set(FIELDS) == {f.name for f in fields(Budget)}, "every Budget field is described in FIELDS"


def budget_dir() -> Path:
    """The shipped presets: the repo's budgets/ for a checkout, nasfpn/budgets/ in a wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "budgets", package / "budgets"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no budgets/ folder beside or inside {package}")


def budget_names() -> list[str]:
    return sorted(p.stem for p in budget_dir().glob("*.yaml"))


def _cross_checks(b: Budget) -> list[Problem]:
    problems = []
    if b.warmup > b.steps:
        problems.append(Problem("warmup", f"{b.warmup} warmup steps exceed the {b.steps} steps"))
    if b.evals > b.steps:
        problems.append(Problem("evals", f"{b.evals} evaluation points exceed the {b.steps} steps"))
    if b.backbone_mode == "cached" and b.augment != "none":
        problems.append(Problem("augment", f"{b.augment} needs the images, but backbone_mode cached trains on "
                                           "features computed once: use backbone_mode frozen or train"))
    if b.backbone == "proxy" and b.backbone_weights:
        problems.append(Problem("backbone_weights", "the proxy backbone is pretrained here: weights are for "
                                                    "resnet18, resnet34 or resnet50"))
    return problems


def _resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    path = Path(name_or_path)
    if relative_to is not None and not path.is_absolute() and (relative_to / path).is_file():
        return relative_to / path
    if path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path
    preset = budget_dir() / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise DSLError([Problem("", f"no budget preset or file named '{name_or_path}'"
                            + did_you_mean(name_or_path, budget_names()))], "--budget")


def _read_layers(path: Path, depth: int = 0) -> tuple[dict[str, Any], list[tuple[str, str, int | None]]]:
    """The merged raw fields of a file and its bases, and (field, source, line) of each value."""
    data, lines = load_yaml(path)
    source = str(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DSLError([Problem("", f"a budget is a mapping of fields, got {describe(data)}")], source)
    merged: dict[str, Any] = {}
    origin: dict[str, tuple[str, int | None]] = {}
    if "base" in data:
        base = data["base"]
        if not isinstance(base, str) or not base:
            raise DSLError([Problem("base", f"expected a budget name or file, got {describe(base)}",
                                    line_of("base", lines))], source)
        if depth >= MAX_BASE_DEPTH:
            raise DSLError([Problem("base", f"bases nested more than {MAX_BASE_DEPTH} deep (a cycle?)",
                                    line_of("base", lines))], source)
        base_fields, base_origin = _read_layers(_resolve(base, path.parent), depth + 1)
        merged.update(base_fields)
        origin.update({k: (s, ln) for k, s, ln in base_origin})
    for key, value in data.items():
        if key == "base":
            continue
        merged[key] = value
        origin[key] = (source, line_of(str(key), lines))
    if "name" not in data and depth == 0:
        merged["name"] = path.stem
        origin["name"] = (source, None)
    return merged, [(k, s, ln) for k, (s, ln) in origin.items()]


def _build(raw: dict[str, Any], where: Callable[[str], tuple[str, int | None]]) -> Budget:
    """Every field read by its FIELDS entry; all problems reported at once, each where it was said."""
    by_source: dict[str, list[Problem]] = {}
    values: dict[str, Any] = {}

    def problem(key: str, message: str) -> None:
        source, line = where(key)
        by_source.setdefault(source, []).append(Problem(key, message, line))

    for key, value in raw.items():
        if not isinstance(key, str) or key not in FIELDS:
            problem(str(key), "unknown budget field" + did_you_mean(key, list(FIELDS) + ["base"]))
            continue
        try:
            values[key] = FIELDS[key].read(value)
        except ValueError as err:
            problem(key, str(err))
    if "name" not in values and "name" not in raw:
        problem("name", "a budget needs a name")
    if not by_source:
        budget = Budget(**values)
        for p in _cross_checks(budget):
            problem(p.path, p.message)
        if not by_source:
            return budget
    source, problems = next(iter(by_source.items()))
    raise DSLError(problems, source)


def parse_set(text: str, flag: str = "--set") -> tuple[str, str]:
    """`key=value` of a --set option."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise DSLError([Problem("", f"expected key=value (e.g. steps=2000), got '{text}'")], flag)
    return key, value.strip()


def read_budget(name_or_path: str | Path, sets: Sequence[str] = (), flag: str = "--set") -> Budget:
    """A preset by name (`proxy`) or a budget file, with `--set key=value` overrides applied."""
    raw, origin = _read_layers(_resolve(name_or_path))
    where = {k: (s, ln) for k, s, ln in origin}
    for text in sets:
        key, value = parse_set(text, flag)
        raw[key] = value
        where[key] = (f"{flag} {text}", None)
    return _build(raw, lambda key: where.get(key, (str(name_or_path), None)))


def budget_from_dict(data: Any, source: str) -> Budget:
    """A resolved budget as `as_dict` wrote it (a run's manifest, a metrics file)."""
    if not isinstance(data, dict):
        raise DSLError([Problem("budget", f"expected a mapping of budget fields, got {describe(data)}")], source)
    return _build(dict(data), lambda key: (source, None))


def with_fields(budget: Budget, **values: Any) -> Budget:
    """The budget with fields replaced, each value read and checked like a file's (every field
    kept, also those its head does not read)."""
    return _build({**asdict(budget), "jitter": list(budget.jitter), **values}, lambda key: ("<budget>", None))


def with_head_of(budget: Budget, other: Budget, keep: Sequence[str] = ()) -> Budget:
    """`budget` scoring under `other`'s head: every head field taken from `other`, but those in
    `keep` (what the user set on this budget)."""
    return with_fields(budget, **{k: getattr(other, k) for k in HEAD_FIELDS if k not in keep})


__all__ = ["ANCHORS", "AUGMENTS", "BACKBONES", "BACKBONE_MODES", "BOX_LOSSES", "Budget", "FIELDS", "HEADS",
           "HEAD_FIELDS", "NECK_INITS", "NMS_KINDS", "ROI_LEVELS", "SCHEDULES",
           "budget_dir", "budget_from_dict", "budget_names", "parse_set", "read_budget", "with_fields",
           "with_head_of"]
