"""summary(): per-layer rows, MAC counting rules, totals, and that the model is left untouched."""
import numpy as np
import pytest
from conftest import require

from minimix import nn
from minimix.models import MIXNET_S, mixnet_cifar, summary


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.mix = nn.MixConv2d(4, kernel_sizes=(3, 5))
        self.pw = nn.GroupedConv2d(4, 6, groups=2)
        self.bn = nn.BatchNorm2d(6)
        self.se = nn.SqueezeExcite(6, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.se(self.bn(self.pw(self.mix(self.conv(x)))))
        return self.fc(self.flat(self.pool(x)))


def test_macs_by_layer_type():
    s = summary(Tiny(), (3, 8, 8), verbose=False)
    rows = {r.name: r for r in s.rows}
    assert list(rows) == ["conv", "mix", "pw", "bn", "se", "pool", "flat", "fc"]
    assert rows["conv"].output_shape == (1, 4, 4, 4)
    assert rows["conv"].macs == (4 * 4 * 4) * (3 * 3 * 3)        # out elements x fan-in
    assert rows["mix"].macs == 2 * 16 * 3 * 3 + 2 * 16 * 5 * 5    # two depthwise groups of 2 channels
    assert rows["pw"].macs == 3 * 16 * 2 + 3 * 16 * 2             # two groups, 2 in -> 3 out each
    assert rows["se"].macs == 6 * 2 + 2 * 6                       # two 1x1 convs on the pooled map
    assert rows["fc"].macs == 6 * 5
    assert rows["bn"].macs == rows["pool"].macs == 0
    assert rows["mix"].kernel == "3x3,5x5" and rows["pw"].kernel == "1x1 x2 groups"
    assert rows["conv"].kernel == "3x3" and rows["se"].kernel == "1x1 6->2->6"
    assert rows["se"].params == (6 * 2 + 2) + (2 * 6 + 6)
    assert s.total_macs == sum(r.macs for r in s.rows)
    assert s.output_shape == (1, 5)


def test_mixnet_cifar_totals_and_printout(capsys):
    model = mixnet_cifar()
    model.train()
    before = model.state_dict()
    s = summary(model, (3, 32, 32))
    printed = capsys.readouterr().out
    assert s.total_params == model.num_parameters() == 815_388
    assert sum(r.params for r in s.rows) == s.total_params
    assert abs(s.total_macs - 25.9e6) < 0.05e6
    assert "total parameters: 815,388" in printed and f"{s.total_macs:,}" in printed
    assert "blocks.5.0.conv_dw" in printed and "3x3,5x5,7x7,9x9,11x11" in printed
    assert s.input_shape == (1, 3, 32, 32) and s.output_shape == (1, 10)
    assert all(r.output_shape is not None for r in s.rows)
    # the model is left as it was: modes, state, and its own forward methods
    assert all(m.training for m in model.modules())
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()), "hooks are removed"
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_mixnet_cifar_totals_match_the_pytorch_mirror():
    """The parameters and multiply-accumulates summary() reports (the README's 815,388 and 25.9 M) counted
    on the PyTorch mirror of mixnet_cifar (width 0.5), by hooks on its Conv2d and Linear layers."""
    torch = require("torch", "the PyTorch mirror is the reference for mixnet_cifar's totals")
    from minimix.models.torch_mirror import MIXNET_CIFAR_KWARGS, torch_mixnet

    mirror = torch_mixnet(MIXNET_S, **MIXNET_CIFAR_KWARGS).eval()
    macs = []

    def count(module, inputs, output):
        per_output = module.in_features if isinstance(module, torch.nn.Linear) else module.weight[0].numel()
        macs.append(output[0].numel() * per_output)

    for m in mirror.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    with torch.no_grad():
        mirror(torch.zeros(1, 3, 32, 32))
    s = summary(mixnet_cifar(), (3, 32, 32), verbose=False)
    assert s.total_params == sum(p.numel() for p in mirror.parameters()) == 815_388
    assert s.total_macs == sum(macs)
    assert round(s.total_macs / 1e6, 1) == 25.9


def test_batch_of_inputs_gives_per_image_macs():
    model = mixnet_cifar(width_multiplier=0.25)
    one = summary(model, (3, 32, 32), verbose=False)
    two = summary(model, (2, 3, 32, 32), verbose=False)
    assert one.total_macs == two.total_macs and two.output_shape == (2, 10)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        summary(Tiny(), (8, 8), verbose=False)


def test_summary_of_a_bare_mixconv_counts_its_macs():
    """A single layer passed as the model is one row with its own MACs (regression: it was 0)."""
    import minimix as mm
    from minimix.models import summary

    layer = mm.nn.MixConv2d(8, (3, 5))  # 4 channels at 3x3, 4 at 5x5
    result = summary(layer, (8, 16, 16), verbose=False)
    assert len(result.rows) == 1
    assert result.rows[0].output_shape == (1, 8, 16, 16)
    assert result.total_macs == 16 * 16 * (4 * 9 + 4 * 25)


class BatchNormReLU(nn.BatchNorm2d):
    """A BatchNorm holding its activation as a child (as timm's BatchNormAct2d)."""

    def __init__(self, channels):
        super().__init__(channels)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(super().forward(x))


def test_a_module_with_its_own_parameters_and_a_child_is_one_layer():
    s = summary(nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormReLU(4)), (3, 8, 8), verbose=False)
    assert [(r.name, r.type, r.output_shape, r.params) for r in s.rows][1:] == [("1", "BatchNormReLU", (1, 4, 6, 6), 8)]
    assert sum(r.params for r in s.rows) == s.total_params


def test_hooks_are_removed_when_the_forward_fails():
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            self.conv(x)
            raise ArithmeticError("boom")

    model = Fails()
    with pytest.raises(ArithmeticError):
        summary(model, (3, 8, 8), verbose=False)
    assert not model.conv._forward_hooks and model.conv.training
