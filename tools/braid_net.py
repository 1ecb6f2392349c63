"""BRAID's network, written from its published description (Gao et al., Imaging Neuroscience
2025; BRAID v1.0): a 3-D ResNet-101 (bottleneck blocks [3, 4, 23, 3], widths 64/128/256/512,
expansion 4), a 7^3 stem convolution with stride 1 followed by a 3^3 max-pool with stride 2,
shortcut type B (1^3 convolution + batch norm when the shape changes), global average pooling,
then the 2048 image features concatenated with the 6 demographic covariates and one linear layer
2054 -> 1. Parameter names follow MONAI's ResNet (conv1, bn1, layer1.0.conv1, ...,
layer1.0.downsample.0/1, fc) so that checkpoints trained with MONAI load unchanged; as in MONAI,
the shortcut convolution carries a bias and the others do not.
"""
import torch
from torch import nn

EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv3d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, out, 1, stride=stride, bias=True), nn.BatchNorm3d(out)
            )

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + residual)


class BraidResNet(nn.Module):
    def __init__(self, n_input_channels=2, feature_vector_length=6, layers=(3, 4, 23, 3)):
        super().__init__()
        self.conv1 = nn.Conv3d(n_input_channels, 64, 7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.act = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            mods = []
            for b in range(blocks):
                mods.append(Bottleneck(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes * EXPANSION
            setattr(self, f"layer{i + 1}", nn.Sequential(*mods))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(in_planes + feature_vector_length, 1)

    def forward(self, image, covariates):
        x = self.maxpool(self.act(self.bn1(self.conv1(image))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(torch.cat([x, covariates], dim=1))


def randomise(model, seed):
    """Random weights with non-trivial batch-norm statistics, scaled so that 33 residual blocks
    neither explode nor vanish (the last norm of each block starts small, as in zero-init
    residual training) and the output lands in years, so that a float32 round trip is measured
    on realistic magnitudes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("bn3.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05 + 0.2)
            elif name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + 1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 0.5 + 0.75)
        model.fc.bias.fill_(60.0)
    return model
