"""Training budgets: `smoke` (seconds, for tests), `quick` (a whole first search, baselines
included, in under 5 minutes on 2 CPU cores: an eighth of the images, half the width, a quarter
of the images seen in pretraining), `proxy` (the search default) and `full` (the reference that
proxy fidelity is measured against: 10x the steps, backbone trained end to end, the neck at
PyTorch's default init as users train it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

NECK_INITS = ("default", "passthrough")  # PyTorch's init; every merge starts as a pass-through (init.py)


@dataclass(frozen=True)
class Budget:
    name: str
    image_size: int          # images are letterboxed to this square size
    train_images: int
    val_images: int
    width: int               # the neck's channels in the proxy (every neck scored at one width)
    head_depth: int          # convs in each head tower
    batch: int
    steps: int               # optimizer steps of neck + head
    lr: float
    warmup: int
    backbone_steps: int      # pretraining of the shared backbone (once per dataset and seed)
    end_to_end: bool         # train the backbone with the neck (else: frozen, cached features)
    backbone_lr_scale: float = 0.1
    evals: int = 4           # evaluation points (for early stopping); the last is at `steps`
    neck_init: str = "default"  # one of NECK_INITS

    def __post_init__(self) -> None:
        if self.neck_init not in NECK_INITS:
            raise ValueError(f"unknown neck_init {self.neck_init!r} (expected one of {', '.join(NECK_INITS)})")

    def as_dict(self) -> dict:
        return asdict(self)


BUDGETS = {
    "smoke": Budget("smoke", image_size=64, train_images=48, val_images=16, width=16, head_depth=1,
                    batch=8, steps=12, lr=2e-3, warmup=2, backbone_steps=12, end_to_end=False, evals=2,
                    neck_init="passthrough"),
    "quick": Budget("quick", image_size=128, train_images=2048, val_images=256, width=32, head_depth=1,
                    batch=8, steps=300, lr=3e-3, warmup=30, backbone_steps=1600, end_to_end=False,
                    neck_init="passthrough"),
    "proxy": Budget("proxy", image_size=128, train_images=16384, val_images=512, width=64, head_depth=2,
                    batch=16, steps=600, lr=2e-3, warmup=50, backbone_steps=3000, end_to_end=False,
                    neck_init="passthrough"),
    "full": Budget("full", image_size=128, train_images=16384, val_images=512, width=64, head_depth=2,
                   batch=16, steps=6000, lr=2e-3, warmup=200, backbone_steps=3000, end_to_end=True),
}


def get_budget(name: str, **overrides) -> Budget:
    if name not in BUDGETS:
        raise KeyError(name)
    return replace(BUDGETS[name], **{k: v for k, v in overrides.items() if v is not None})
