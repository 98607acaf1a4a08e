"""The backbones a budget can name (`backbone:`), and loading a user's weights into one.

`proxy` is the small network pretrained here on the built-in data; `resnet18/34/50` take a
torchvision-format ImageNet checkpoint (`backbone_weights:`), read with
`torch.load(weights_only=True)`. Each backbone carries its input normalization (`mean`, `std`),
its `out_channels` (C3..C5) and `frozen_parameters()` (what stays fixed when trained end to end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import NasfpnError
from .backbone import ProxyBackbone
from .resnet import ResNet


class WeightsError(NasfpnError):
    """A backbone_weights file that is not a state_dict of the named backbone (one line, exit 2)."""


# name -> factory(feedback_channels, finetune); `finetune` False: pretraining from scratch here
# (the proxy network always trains whole; the ResNets unfreeze BN, stem and first stage)
BACKBONES: dict[str, Callable[[Optional[int], bool], nn.Module]] = {
    "proxy": lambda feedback, finetune: ProxyBackbone(widths=(32, 64, 128, 256), feedback_channels=feedback),
    "resnet18": lambda feedback, finetune: ResNet("resnet18", feedback, finetune),
    "resnet34": lambda feedback, finetune: ResNet("resnet34", feedback, finetune),
    "resnet50": lambda feedback, finetune: ResNet("resnet50", feedback, finetune),
}
IGNORED_PREFIXES = ("fc.",)   # an ImageNet classifier's head
OPTIONAL_SUFFIXES = (".num_batches_tracked",)  # absent from torchvision's older checkpoints


def new_backbone(name: str, feedback_channels: Optional[int] = None, finetune: bool = True) -> nn.Module:
    return BACKBONES[name](feedback_channels, finetune)


def out_channels(name: str) -> list[int]:
    """C3..C5 widths of a backbone, without allocating its weights."""
    with torch.device("meta"):
        return list(new_backbone(name).out_channels)


def normalize(images_uint8: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
    """uint8 images -> the input the backbone was trained on."""
    mean = torch.tensor(backbone.mean, device=images_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=images_uint8.device).view(1, 3, 1, 1)
    return (images_uint8.float() / 255.0 - mean) / std


def _unwrap(saved) -> dict:
    """A state_dict, or one inside a training checkpoint's 'state_dict' / 'model' entry."""
    for key in ("state_dict", "model"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
    return saved


def read_weights(name: str, path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone's state_dict from a user's file, every key and shape checked against `name`."""
    path = Path(path)
    where = f"backbone_weights {path}"
    if not path.is_file():
        raise WeightsError(f"{where}: no such file")
    try:
        saved = _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged file fails torch.load in many ways
        raise WeightsError(f"{where}: not a weights-only torch file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:160]})") from None
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise WeightsError(f"{where}: not a state_dict (a mapping of names to tensors)")
    with torch.device("meta"):  # names and shapes only
        expected = new_backbone(name).state_dict()
    given = {k.removeprefix("module."): v for k, v in saved.items() if not k.startswith(IGNORED_PREFIXES)}
    missing = [k for k in expected if k not in given and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in given if k not in expected]
    for problems, what in ((missing, "missing key"), (unexpected, "unexpected key")):
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise WeightsError(f"{where}: {what} '{problems[0]}'{more}: not {name} weights with torchvision's "
                               "key names")
    for key, value in given.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise WeightsError(f"{where}: '{key}' has shape {tuple(value.shape)}, {name} needs "
                               f"{tuple(expected[key].shape)}")
    state = {k: v.to(expected[k].dtype) for k, v in given.items()}
    for key in expected:
        state.setdefault(key, torch.zeros((), dtype=torch.long))  # num_batches_tracked
    return state


def load_into(backbone: nn.Module, state: dict) -> None:
    """Load the shared weights into a trial's backbone (its feedback convs, if any, stay new)."""
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("feedback_convs") for k in missing):
        raise RuntimeError(f"backbone weights do not fit: missing {missing}, unexpected {unexpected}")
