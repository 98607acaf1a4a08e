"""The proxy backbone: a small ResNet-style network (NAS-FPN searched with a ResNet-10 proxy),
one basic block per stage, returning C3..C5 (C2 on request). It implements the feedback hook of
`nasfpn.compile.feedback`: feedback[i] goes through a zero-initialised 1x1 conv and is added after
the first block of the stage that produces output i, so DetectoRS' RFP can run through it."""

from __future__ import annotations

from typing import List, Optional, Sequence

from torch import Tensor, nn

from .resnet import BasicBlock, feedback_hook, run_stage


class ProxyBackbone(nn.Module):
    """Strides 4 (C2), 8 (C3), 16 (C4), 32 (C5); widths `widths` = (C2, C3, C4, C5). Trained end
    to end it trains whole, batch norm included (it is pretrained here, on the same data)."""

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), blocks: int = 1,
                 with_c2: bool = False, feedback_channels: Optional[int] = None):
        super().__init__()
        self.widths = list(widths)
        self.with_c2 = with_c2
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0] // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0] // 2), nn.ReLU(),
            nn.Conv2d(widths[0] // 2, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.stages = nn.ModuleList()
        cin = widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            self.stages.append(nn.Sequential(BasicBlock(cin, cout, stride),
                                             *[BasicBlock(cout, cout, 1) for _ in range(blocks - 1)]))
            cin = cout
        self.feedback_convs = feedback_hook(feedback_channels, self.out_channels)

    def frozen_parameters(self) -> list:
        return []

    @property
    def out_channels(self) -> List[int]:
        return self.widths if self.with_c2 else self.widths[1:]

    def forward(self, images: Tensor, feedback: Optional[Sequence[Tensor]] = None) -> List[Tensor]:
        x = self.stem(images)
        outs: List[Tensor] = []
        first_out = 0 if self.with_c2 else 1
        for i, stage in enumerate(self.stages):
            k = i - first_out
            if k < 0:
                x = stage(x)
            else:
                x = run_stage(stage, x, self.feedback_convs, k, feedback)
                outs.append(x)
        return outs
