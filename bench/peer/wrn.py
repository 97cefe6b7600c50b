"""wrn.py - the reference Wide ResNet in PyTorch (pre-activation basic blocks,
no dropout), with the same parameter names and layouts as oodc's models/wrn.c,
so checkpoints move between the two. Used by fixtures and benchmark peers."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes and stride == 1
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        o1 = F.relu(self.bn1(x))
        y = self.conv1(o1)
        z = self.conv2(F.relu(self.bn2(y)))
        return z + (x if self.equal else self.convShortcut(o1))


class Group(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[BasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                                stride if i == 0 else 1) for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, width, num_classes=10, in_ch=3):
        super().__init__()
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        w = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.block1 = Group(n, w[0], w[1], 1)
        self.block2 = Group(n, w[1], w[2], 2)
        self.block3 = Group(n, w[2], w[3], 2)
        self.bn1 = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / k))
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def features(self, x):
        h = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn1(h)).mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


if __name__ == "__main__":
    for d, w, c in [(10, 1, 1), (16, 4, 1), (28, 10, 3)]:
        m = WideResNet(d, w, 10, c)
        print(f"wrn-{d}-{w} in_ch={c}: {sum(p.numel() for p in m.parameters())} params, "
              f"{len(m.state_dict())} tensors")
