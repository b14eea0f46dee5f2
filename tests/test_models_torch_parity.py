"""A whole small MixNet against an equivalent PyTorch network: forward and every parameter's gradient.

The PyTorch network is written here from the same block table (timm's module names, so
``to_timm_state_dict`` loads into it strictly), in float64, training mode (batch statistics).
"""
import numpy as np
import pytest

import minimix as mm
from minimix.models import MIXNET_S, decode_stages, mixnet_cifar, mixnet_s, timm_key_map, to_timm_state_dict

torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
tnn, F = torch.nn, torch.nn.functional


def _split(channels, groups):
    sizes = [channels // groups] * groups
    sizes[0] += channels - sum(sizes)
    return sizes


class _Groups(tnn.ModuleList):
    """Convs applied to channel slices and concatenated (timm names them 0, 1, ...)."""

    def __init__(self, convs, in_splits):
        super().__init__(convs)
        self.in_splits = in_splits

    def forward(self, x):
        return torch.cat([conv(part) for conv, part in zip(self, torch.split(x, self.in_splits, dim=1))], dim=1)


def _pointwise(cin, cout, groups):
    if groups == 1:
        return tnn.Conv2d(cin, cout, 1, bias=False)
    ins, outs = _split(cin, groups), _split(cout, groups)
    return _Groups([tnn.Conv2d(i, o, 1, bias=False) for i, o in zip(ins, outs)], ins)


def _mixed_depthwise(channels, kernels, stride):
    splits = _split(channels, len(kernels))
    convs = [tnn.Conv2d(c, c, k, stride=stride, padding=k // 2, groups=c, bias=False) for c, k in zip(splits, kernels)]
    return convs[0] if len(convs) == 1 else _Groups(convs, splits)


class _SE(tnn.Module):
    def __init__(self, channels, reduced, act):
        super().__init__()
        self.conv_reduce, self.conv_expand, self.act = tnn.Conv2d(channels, reduced, 1), tnn.Conv2d(reduced, channels, 1), act

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.conv_expand(self.act(self.conv_reduce(s))))


class _Block(tnn.Module):
    def __init__(self, a, cin, stride):
        super().__init__()
        act = F.silu if a.swish else F.relu
        self.act, self.skip = act, stride == 1 and cin == a.out_channels
        mid = cin * a.expand_ratio
        self.expand = a.expand_ratio != 1
        if self.expand:
            self.conv_pw = _pointwise(cin, mid, len(a.expand_kernel_sizes))
            self.bn1 = tnn.BatchNorm2d(mid)
        self.conv_dw = _mixed_depthwise(mid, a.kernel_sizes, stride)
        dw_bn = tnn.BatchNorm2d(mid)
        if self.expand:
            self.bn2 = dw_bn
        else:
            self.bn1 = dw_bn
        self.se = _SE(mid, max(1, int(cin * a.se_ratio)), act) if a.se_ratio else None
        project = _pointwise(mid, a.out_channels, len(a.project_kernel_sizes))
        if self.expand:
            self.conv_pwl, self.bn3 = project, tnn.BatchNorm2d(a.out_channels)
        else:
            self.conv_pw, self.bn2 = project, tnn.BatchNorm2d(a.out_channels)

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


class TorchMixNet(tnn.Module):
    def __init__(self, table, width, stem, stem_stride, first_downsample_stride, head, num_classes):
        super().__init__()
        stages = [[a.scaled(width) for a in stage] for stage in decode_stages(table)]
        cin = stages[0][0].in_channels
        self.conv_stem = tnn.Conv2d(3, cin, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cin)
        assert cin == stem
        seen_downsample, torch_stages = False, []
        for stage in stages:
            blocks = []
            for a in stage:
                stride = a.stride[0]
                if stride == 2 and not seen_downsample:
                    seen_downsample = True
                    stride = first_downsample_stride or stride
                for r in range(a.repeats):
                    blocks.append(_Block(a, cin, stride if r == 0 else 1))
                    cin = a.out_channels
            torch_stages.append(tnn.Sequential(*blocks))
        self.blocks = tnn.Sequential(*torch_stages)
        self.conv_head = tnn.Conv2d(cin, head, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(head)
        self.classifier = tnn.Linear(head, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv_stem(x)))
        x = F.relu(self.bn2(self.conv_head(self.blocks(x))))
        return self.classifier(x.mean(dim=(2, 3)))


def _to_float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    for _, m in model.named_modules():
        for name in m._buffer_names:
            m.register_buffer(name, np.asarray(getattr(m, name)).astype(np.float64))
    return model


CONFIGS = {
    "mixnet_s_w0.25": (lambda: mixnet_s(num_classes=10, width_multiplier=0.25, dropout=0.0),
                       dict(table=MIXNET_S, width=0.25, stem=8, stem_stride=2, first_downsample_stride=None,
                            head=1536, num_classes=10)),
    "mixnet_cifar_w0.25": (lambda: mixnet_cifar(num_classes=10, width_multiplier=0.25, dropout=0.0),
                           dict(table=MIXNET_S, width=0.25, stem=8, stem_stride=1, first_downsample_stride=1,
                                head=1024, num_classes=10)),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_whole_network_forward_backward_float64(config):
    build_mm, torch_kwargs = CONFIGS[config]
    mm.manual_seed(3)
    model = _to_float64(build_mm())
    # non-trivial BatchNorm parameters and statistics, so every term of the gradient matters
    rng = np.random.default_rng(1)
    for name, p in model.named_parameters():
        if ".bn" in "." + name:
            p.data = p.data + 0.1 * rng.standard_normal(p.shape)
    timm_state = to_timm_state_dict(model)
    ref = TorchMixNet(**torch_kwargs).double()
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in timm_state.items()}, strict=True)

    x = rng.standard_normal((2, 3, 32, 32))
    v = rng.standard_normal((2, 10))
    model.train()
    ref.train()
    logits = model(mm.Tensor(x))
    (logits * mm.Tensor(v)).sum().backward()
    ref_logits = ref(torch.from_numpy(x))
    (ref_logits * torch.from_numpy(v)).sum().backward()

    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits.data, ref_logits.detach().numpy(), rtol=1e-7, atol=1e-9)
    names = timm_key_map(model)
    ref_params = dict(ref.named_parameters())
    ours = dict(model.named_parameters())
    assert len(ours) == len(ref_params)
    for name, p in ours.items():
        expected = ref_params[names[name]].grad.numpy()
        assert p.grad is not None, name
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(p.grad, expected, rtol=1e-6, atol=1e-9 * scale, err_msg=name)
    # running statistics after the train-mode forward agree too
    ref_state = ref.state_dict()
    after = to_timm_state_dict(model)
    for k in after:
        if k.endswith(("running_mean", "running_var")):
            np.testing.assert_allclose(after[k], ref_state[k].numpy(), rtol=1e-6, atol=1e-9, err_msg=k)
