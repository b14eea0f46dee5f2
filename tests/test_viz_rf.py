"""Theoretical receptive fields: hand-derived answers for small stacks, MixConv groups, skips, SE."""
import numpy as np
import pytest

import minimix as mm
from minimix import nn
from minimix.viz import conv_layers, format_table, layer_field, receptive_field


def rfs(*layers, shape=(1, 33, 33)):
    """(rf, jump, start) of each conv layer of Sequential(*layers)."""
    return [(rec.rf, rec.jump, rec.start) for rec in receptive_field(nn.Sequential(*layers), shape)]


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_single_conv_rf_is_its_kernel(k):
    # valid padding: output unit 0 is centred on input pixel (k - 1) / 2
    assert rfs(nn.Conv2d(1, 2, k)) == [(k, 1, (k - 1) / 2)]


def test_two_stacked_3x3_give_5():
    assert rfs(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)) == [(3, 1, 0.0), (5, 1, 0.0)]


def test_stride_2_then_3x3_gives_7():
    # r = 1 + 2*1 = 3, jump 2; then r = 3 + 2*2 = 7
    got = rfs(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 3, padding=1))
    assert got == [(3, 2, 0.0), (7, 2, 0.0)]


def test_start_moves_with_valid_padding_and_stride():
    # 5x5 stride 2 valid: start = (5-1)/2 = 2, jump 2; 3x3 valid: start = 2 + 1*2 = 4, r = 5 + 2*2 = 9
    assert rfs(nn.Conv2d(1, 1, 5, stride=2), nn.Conv2d(1, 1, 3)) == [(5, 2, 2.0), (9, 2, 4.0)]


@pytest.mark.parametrize("layers, expected", [
    ([(3, 1, 2)], [5]),                          # effective kernel 2*(3-1)+1 = 5
    ([(3, 1, 2), (3, 1, 2)], [5, 9]),
    ([(3, 2, 1), (3, 1, 2)], [3, 3 + 4 * 2]),    # dilated kernel after a stride: (5-1) * jump 2
    ([(3, 1, 4), (3, 1, 1)], [9, 11]),
])
def test_dilation_uses_the_effective_kernel(layers, expected):
    convs = [nn.Conv2d(1, 1, k, stride=s, dilation=d, padding=d * (k - 1) // 2) for k, s, d in layers]
    assert [r for r, _, _ in rfs(*convs)] == expected


def test_non_square_kernel_keeps_both_axes():
    rec, = receptive_field(nn.Sequential(nn.Conv2d(1, 1, (3, 5), padding=(1, 2))), (1, 9, 9))
    assert rec.kernel_sizes == ((3, 5),)
    assert (rec.field[0].r, rec.field[1].r, rec.rf) == (3, 5, 5)


def test_same_padding_string_is_understood():
    rec, = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 5, padding="same")), (1, 9, 9))
    assert (rec.rf, rec.start) == (5, 0.0)


def test_mixconv_reports_each_group_and_the_largest():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.MixConv2d(6, (3, 5, 7)), nn.Conv2d(6, 4, 1))
    stem, mix, point = receptive_field(model, (3, 32, 32))
    # after the stem r = 3, jump 2: each group adds (k - 1) * 2
    assert mix.rf_groups == (7, 11, 15) and mix.rf == 15 and mix.kernel_sizes == (3, 5, 7)
    assert point.rf == 15 and point.jump == 2  # the 1x1 conv sees the largest group's field


def test_dilated_strided_mixconv():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.MixConv2d(6, (3, 5, 7), stride=2, dilation=2))
    _, mix = receptive_field(model, (3, 32, 32))
    # effective kernels 5, 9, 13 on jump 2
    assert mix.rf_groups == (3 + 4 * 2, 3 + 8 * 2, 3 + 12 * 2) and mix.jump == 4


class Residual(nn.Module):
    """out = x + body(x): a skip connection around the body."""

    def __init__(self, *body):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return x + self.body(x)


class TwoPaths(nn.Module):
    """out = cat(a(x), b(x)) or a(x) + b(x)."""

    def __init__(self, a, b, concat):
        super().__init__()
        self.a, self.b, self.concat = a, b, concat

    def forward(self, x):
        return mm.cat([self.a(x), self.b(x)], axis=1) if self.concat else self.a(x) + self.b(x)


def test_skip_connection_takes_the_longer_path():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1),
                          Residual(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)),
                          nn.Conv2d(2, 2, 1))
    assert [rec.rf for rec in receptive_field(model, (1, 16, 16))] == [3, 5, 7, 7]


@pytest.mark.parametrize("concat", [False, True])
@pytest.mark.parametrize("big_first", [False, True])
def test_parallel_paths_take_the_largest(concat, big_first):
    big, small = nn.Conv2d(1, 2, 7, padding=3), nn.Conv2d(1, 2, 3, padding=1)
    paths = TwoPaths(big, small, concat) if big_first else TwoPaths(small, big, concat)
    records = receptive_field(nn.Sequential(paths, nn.Conv2d(4 if concat else 2, 2, 3, padding=1)), (1, 16, 16))
    assert records[-1].rf == 7 + 2


def test_squeeze_excite_does_not_change_the_local_field():
    model = nn.Sequential(nn.MixConv2d(4, (3, 5)), nn.SqueezeExcite(4, 2), nn.Conv2d(4, 4, 3, padding=1))
    records = receptive_field(model, (4, 12, 12))
    assert [rec.name for rec in records] == ["0", "1.conv_reduce", "1.conv_expand", "2"]
    assert records[-1].rf == 5 + 2


def test_grouped_pointwise_conv_is_one_layer():
    model = nn.Sequential(nn.GroupedConv2d(6, 4, groups=2), nn.MixConv2d(4, (3, 5)))
    assert [name for name, _ in conv_layers(model)] == ["0", "1"]
    first, second = receptive_field(model, (6, 8, 8))
    assert first.rf_groups == (1, 1) and second.rf_groups == (3, 5)


def test_mixnet_cifar_groups_follow_the_recurrence():
    records = receptive_field(mm.models.mixnet_cifar(), (3, 32, 32))
    mixconvs = [rec for rec in records if rec.kind == "MixConv2d"]
    assert records[0].name == "conv_stem" and records[0].rf == 3
    assert any(len(rec.kernel_sizes) == 4 for rec in mixconvs)
    for rec in mixconvs:
        jump_in = rec.jump // rec.stride
        # every group starts from the same input field, so groups differ by (k_i - k_0) * dilation * jump_in
        expected = [rec.rf_groups[0] + (k - rec.kernel_sizes[0]) * rec.dilation * jump_in for k in rec.kernel_sizes]
        assert list(rec.rf_groups) == expected
    rf_3x3 = [rec.rf for rec in receptive_field(mm.models.mixnet_cifar(kernel_sizes=(3,)), (3, 32, 32))]
    rf_mix = [rec.rf for rec in records]
    assert len(rf_3x3) == len(rf_mix)
    assert all(a <= b for a, b in zip(rf_3x3, rf_mix)) and rf_3x3[-1] < rf_mix[-1]


def test_model_is_left_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.Conv2d(2, 2, 3))
    model.train()
    state = model.state_dict()
    rng_state = mm.random.get_state()
    receptive_field(model, (1, 8, 8))
    assert all(m.training for m in model.modules())
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert "forward" not in model[0].__dict__
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()), "hooks are removed"
    assert mm.random.get_state() == rng_state


def test_tracing_hooks_come_and_go_beside_the_models_own():
    """The tracer's forward hooks are removed after the pass, also when a hook stops it early, and
    hooks the model already had keep running and stay."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3))
    calls = []

    def own_hook(module, args, output):
        calls.append("own hook")

    own = model[2].register_forward_hook(own_hook)
    field = layer_field(model, (1, 9, 9), "1")  # stops after the ReLU: the last conv never runs
    assert field[0].r == 3 and calls == []
    assert [rec.rf for rec in receptive_field(model, (1, 9, 9))] == [3, 5] and calls == ["own hook"]
    assert list(model[2]._forward_hooks.values()) == [own_hook]
    assert not any(m._forward_hooks for m in (model, model[0], model[1]))
    own.remove()


def test_format_table_has_a_row_per_layer():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.MixConv2d(6, (3, 5, 7)))
    table = format_table(receptive_field(model, (3, 16, 16)))
    header, rule, stem, mix = table.splitlines()
    assert "r per group" in header and set(rule) <= {"-", " "}
    assert mix.split()[:4] == ["2", "1", "MixConv2d", "3/5/7"] and "7/11/15" in mix.split()


@pytest.mark.parametrize("shape", [(32, 32), (1, 3, 0, 8), (2, 2, 3, 8, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        receptive_field(nn.Sequential(nn.Conv2d(3, 2, 3)), shape)
