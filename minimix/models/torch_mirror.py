"""A PyTorch MixNet built from the same block table: the reference for tests and benchmarks.

minimix itself never imports this module (nor torch); ``tests/test_models_torch_parity.py``
checks minimix's MixNet against it gradient by gradient, and ``benchmarks/train_step.py``
times both. It is written independently of ``minimix.models.mixnet`` (it decodes the table
itself), with timm's module names, so ``to_timm_state_dict(model)`` loads into it strictly::

    ref = torch_mixnet(MIXNET_S, width=0.5, stem=8, stem_stride=1, first_downsample_stride=1,
                       head=1024, num_classes=10)          # the network of mixnet_cifar()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in to_timm_state_dict(model).items()})

torch is imported inside the functions only.
"""
import functools

from .blockstring import decode_stages

# mixnet_cifar()'s network (width 0.5, stem 16 * 0.5, no early downsampling, 1024-wide head)
MIXNET_CIFAR_KWARGS = dict(width=0.5, stem=8, stem_stride=1, first_downsample_stride=1, head=1024, num_classes=10)


def _split(channels, groups, split="equal"):
    if split == "exponential":  # group i gets channels // 2^i, the last one the rest (the paper's section 3)
        sizes = [channels // 2 ** i for i in range(1, groups)]
        return sizes + [channels - sum(sizes)]
    sizes = [channels // groups] * groups
    sizes[0] += channels - sum(sizes)
    return sizes


@functools.lru_cache(maxsize=None)
def _classes():
    """The torch.nn.Module classes, defined on first use (so importing this module needs no torch)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Groups(nn.ModuleList):
        """Convs applied to channel slices and concatenated (timm names them 0, 1, ...)."""

        def __init__(self, convs, in_splits):
            super().__init__(convs)
            self.in_splits = in_splits

        def forward(self, x):
            return torch.cat([conv(part) for conv, part in zip(self, torch.split(x, self.in_splits, dim=1))], dim=1)

    def pointwise(cin, cout, groups):
        if groups == 1:
            return nn.Conv2d(cin, cout, 1, bias=False)
        ins, outs = _split(cin, groups), _split(cout, groups)
        return Groups([nn.Conv2d(i, o, 1, bias=False) for i, o in zip(ins, outs)], ins)

    def mixed_depthwise(channels, kernels, stride, split="equal", dilated=False):
        splits = _split(channels, len(kernels), split)
        # the reference code's `dilated` option: at stride 1, k x k (k > 3) -> 3x3 at dilation (k - 1) // 2
        use_dilation = dilated and stride == 1 and max(kernels) > 3
        shapes = [(3, (k - 1) // 2) if use_dilation and k > 3 else (k, 1) for k in kernels]
        convs = [nn.Conv2d(c, c, k, stride=stride, padding=d * (k // 2), dilation=d, groups=c, bias=False)
                 for c, (k, d) in zip(splits, shapes)]
        return convs[0] if len(convs) == 1 else Groups(convs, splits)

    class SE(nn.Module):
        def __init__(self, channels, reduced, act):
            super().__init__()
            self.conv_reduce, self.conv_expand = nn.Conv2d(channels, reduced, 1), nn.Conv2d(reduced, channels, 1)
            self.act = act

        def forward(self, x):
            s = x.mean(dim=(2, 3), keepdim=True)
            return x * torch.sigmoid(self.conv_expand(self.act(self.conv_reduce(s))))

    class Block(nn.Module):
        def __init__(self, a, cin, stride, split="equal", dilated=False):
            super().__init__()
            act = F.silu if a.swish else F.relu
            self.act, self.skip = act, stride == 1 and cin == a.out_channels
            mid = cin * a.expand_ratio
            self.expand = a.expand_ratio != 1
            if self.expand:
                self.conv_pw = pointwise(cin, mid, len(a.expand_kernel_sizes))
                self.bn1 = nn.BatchNorm2d(mid)
            self.conv_dw = mixed_depthwise(mid, a.kernel_sizes, stride, split, dilated)
            dw_bn = nn.BatchNorm2d(mid)
            if self.expand:
                self.bn2 = dw_bn
            else:
                self.bn1 = dw_bn
            self.se = SE(mid, max(1, int(cin * a.se_ratio)), act) if a.se_ratio else None
            project = pointwise(mid, a.out_channels, len(a.project_kernel_sizes))
            if self.expand:
                self.conv_pwl, self.bn3 = project, nn.BatchNorm2d(a.out_channels)
            else:
                self.conv_pw, self.bn2 = project, nn.BatchNorm2d(a.out_channels)

        def forward(self, x):
            y = x
            if self.expand:
                y = self.act(self.bn1(self.conv_pw(y)))
                y = self.act(self.bn2(self.conv_dw(y)))
            else:
                y = self.act(self.bn1(self.conv_dw(y)))
            if self.se is not None:
                y = self.se(y)
            y = self.bn3(self.conv_pwl(y)) if self.expand else self.bn2(self.conv_pw(y))
            return y + x if self.skip else y

    class TorchMixNet(nn.Module):
        def __init__(self, table, width, stem, stem_stride, first_downsample_stride, head, num_classes,
                     dropout=0.0, kernel_sizes=None, split="equal", dilated=False):
            super().__init__()
            stages = [[a.scaled(width) for a in stage] for stage in decode_stages(table)]
            if kernel_sizes is not None:
                stages = [[a.replace(kernel_sizes=tuple(kernel_sizes)) for a in stage] for stage in stages]
            cin = stages[0][0].in_channels
            if cin != stem:
                raise ValueError(f"the table's first block takes {cin} channels but stem={stem}")
            self.conv_stem = nn.Conv2d(3, cin, 3, stride=stem_stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cin)
            seen_downsample, torch_stages = False, []
            for stage in stages:
                blocks = []
                for a in stage:
                    stride = a.stride[0]
                    if stride == 2 and not seen_downsample:
                        seen_downsample = True
                        stride = first_downsample_stride or stride
                    for r in range(a.repeats):
                        blocks.append(Block(a, cin, stride if r == 0 else 1, split, dilated))
                        cin = a.out_channels
                torch_stages.append(nn.Sequential(*blocks))
            self.blocks = nn.Sequential(*torch_stages)
            self.conv_head = nn.Conv2d(cin, head, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(head)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(head, num_classes)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv_stem(x)))
            x = F.relu(self.bn2(self.conv_head(self.blocks(x))))
            return self.classifier(self.dropout(x.mean(dim=(2, 3))))

    return TorchMixNet


def torch_mixnet(table, width, stem, stem_stride, first_downsample_stride, head, num_classes, dropout=0.0,
                 kernel_sizes=None, split="equal", dilated=False):
    """A torch MixNet from a block table (as minimix's MixNet with the same arguments; timm's names).
    ``kernel_sizes``, ``split``, ``dilated``: as ``MixNet``'s (every depthwise kernel list replaced; the
    MixConv channel split; stride-1 kernels k > 3 as 3x3 at dilation (k - 1) / 2)."""
    return _classes()(table, width, stem, stem_stride, first_downsample_stride, head, num_classes, dropout,
                      kernel_sizes, split, dilated)
