"""ResNet-18/34/50 in plain torch whose `state_dict` keys are exactly torchvision's (`conv1.weight`,
`bn1.running_mean`, `layer2.0.downsample.0.weight`, ...; no `fc`), so a user's ImageNet
checkpoint loads as it is. Returns C3..C5 (strides 8, 16, 32) and has the feedback hook of
`nasfpn.compile.feedback` (DetectoRS' RFP): feedback[i], through a zero-initialised 1x1 conv, is
added after the first block of the stage that produces output i.

For detection the network is used as detectron2 and mmdetection do: batch norm frozen (running
statistics and affine parameters fixed) and, when trained end to end, the stem and the first
stage frozen too (`finetune`; pretraining here from scratch trains all of it).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5: the stride on the 3x3 conv."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = _downsample(cin, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


def _downsample(cin: int, cout: int, stride: int) -> Optional[nn.Sequential]:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def feedback_hook(feedback_channels: Optional[int], out_channels: Sequence[int]) -> Optional[nn.ModuleList]:
    """The RFP hook's zero-initialised 1x1 convs, one per output (None for a backbone without it)."""
    if feedback_channels is None:
        return None
    convs = nn.ModuleList(nn.Conv2d(feedback_channels, c, 1) for c in out_channels)
    for conv in convs:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return convs


def run_stage(stage: nn.Sequential, x: Tensor, convs: Optional[nn.ModuleList], k: int,
              feedback: Optional[Sequence[Tensor]]) -> Tensor:
    """A stage, with feedback[k] (through convs[k]) added after its first block when given."""
    if feedback is not None and convs is None:
        raise ValueError("this backbone was built without feedback_channels: it has no feedback hook")
    x = stage[0](x)
    if feedback is not None:
        x = x + convs[k](feedback[k])
    for block in stage[1:]:
        x = block(x)
    return x


DEPTHS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
          "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, depth: str, feedback_channels: Optional[int] = None, finetune: bool = True):
        super().__init__()
        block, counts = DEPTHS[depth]
        self.finetune = finetune  # detection fine-tuning (frozen BN, stem, first stage); False: pretraining
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, widths = 64, []
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), counts)):
            blocks = [block(cin, planes, 1 if i == 0 else 2)]
            cin = planes * block.expansion
            blocks += [block(cin, planes, 1) for _ in range(count - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            widths.append(cin)
        self.out_channels: List[int] = widths[1:]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.feedback_convs = feedback_hook(feedback_channels, self.out_channels)

    def stages(self) -> List[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        if mode and self.finetune:  # frozen statistics: batches of a few detection images are no estimate
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def frozen_parameters(self) -> list[nn.Parameter]:
        """What stays fixed when the backbone trains end to end: every BN's affine parameters, the
        stem and the first stage (detectron2's FREEZE_AT=2, mmdetection's frozen_stages=1)."""
        if not self.finetune:
            return []
        fixed = [p for m in self.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
        fixed += list(self.conv1.parameters()) + list(self.layer1.parameters())
        return fixed

    def forward(self, images: Tensor, feedback: Optional[Sequence[Tensor]] = None) -> List[Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(images)))))
        outs: List[Tensor] = []
        for k, stage in enumerate(self.stages()[1:]):
            x = run_stage(stage, x, self.feedback_convs, k, feedback)
            outs.append(x)
        return outs
