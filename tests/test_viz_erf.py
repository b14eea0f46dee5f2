"""Effective receptive fields: exact answers for linear conv stacks, MixConv groups, summaries, errors."""
import numpy as np
import pytest

import minimix as mm
from minimix import nn
from minimix.viz import compute_erf, effective_receptive_field, erf_summary, mixconv_group_erfs


def conv_stack(kernels, **conv_options):
    """Single-channel bias-free convs with the given (k, k) weight arrays (float64)."""
    convs = []
    for w in kernels:
        conv = nn.Conv2d(1, 1, w.shape[0], bias=False, **conv_options)
        conv.weight = nn.Parameter(w[None, None].astype(np.float64))
        convs.append(conv)
    return nn.Sequential(*convs)


def full_conv2d(a, b):
    """Full 2-D convolution by adding shifted copies of ``a`` (NumPy only)."""
    out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
    for i, j in np.ndindex(b.shape):
        out[i:i + a.shape[0], j:j + a.shape[1]] += b[i, j] * a
    return out


def inputs(n=2, c=1, size=21, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, size, size))


def support_box(erf_map):
    rows, cols = np.nonzero(erf_map)
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("padding", [0, "same"])
def test_single_conv_erf_support_is_k_by_k(k, padding):
    model = nn.Sequential(nn.Conv2d(3, 4, k, padding=padding))
    erf = compute_erf(model, inputs(c=3, size=11), "0")
    lo, hi = erf.centre[0] - (k - 1) // 2, erf.centre[0] + (k - 1) // 2
    assert erf.rf == (k, k) and np.count_nonzero(erf.map) == k * k
    assert support_box(erf.map) == (lo, hi, lo, hi)


def test_single_conv_erf_is_the_magnitude_of_its_weights():
    """d y[c, i0, j0] / d x[ch, i0 - p + u, j0 - p + v] = w[c, ch, u, v]: abs per input channel, then sum."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    conv.weight = nn.Parameter(np.random.default_rng(3).standard_normal((4, 3, 3, 3)))  # mixed signs
    conv.bias = nn.Parameter(np.zeros(4))
    erf = compute_erf(nn.Sequential(conv), inputs(c=3, size=7), "0", channels=[1, 2])
    expected = np.zeros((7, 7))
    expected[2:5, 2:5] = np.abs(conv.weight.data[[1, 2]].sum(axis=0)).sum(axis=0)
    np.testing.assert_allclose(erf.map, expected, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_uniform_linear_stack_is_the_n_fold_convolution(n):
    k, size = 3, 17
    model = conv_stack([np.ones((k, k))] * n, padding=1)
    erf = compute_erf(model, inputs(size=size), str(n - 1))
    line = np.ones(1)
    for _ in range(n):
        line = np.convolve(line, np.ones(k))
    expected = np.zeros((size, size))
    c, half = int(erf.centre[0]), n * (k - 1) // 2
    expected[c - half:c + half + 1, c - half:c + half + 1] = np.outer(line, line)
    np.testing.assert_allclose(erf.map, expected, rtol=1e-12)


def test_positive_linear_stack_is_the_convolution_of_its_kernels():
    rng = np.random.default_rng(1)
    kernels = [rng.uniform(0.1, 1.0, (k, k)) for k in (3, 5, 3)]
    model = conv_stack(kernels)  # valid padding, stride 1
    erf = compute_erf(model, inputs(size=15), "2")
    expected_core = full_conv2d(full_conv2d(kernels[0], kernels[1]), kernels[2])  # 9 x 9
    r, (cr, cc) = erf.rf[0], erf.centre
    lo_r, lo_c = int(cr - (r - 1) / 2), int(cc - (r - 1) / 2)
    assert expected_core.shape == (r, r)
    np.testing.assert_allclose(erf.map[lo_r:lo_r + r, lo_c:lo_c + r], expected_core, rtol=1e-12)
    assert np.isclose(erf.map.sum(), expected_core.sum(), rtol=1e-12)  # nothing outside


@pytest.mark.parametrize("layers", [
    [(3, 2, 1, 1), (3, 1, 1, 1)],              # stride 2 then 3x3: r = 7
    [(5, 2, 0, 1), (3, 1, 0, 1)],              # valid padding moves the centre
    [(3, 1, 2, 2), (3, 2, 0, 1), (3, 1, 2, 2)],  # dilation before and after a stride
    [(5, 1, 0, 1), (3, 3, 1, 1), (3, 1, 0, 1)],
])
def test_theory_matches_the_gradient_footprint(layers):
    """The centre unit's gradient reaches exactly the theoretical square (positive weights)."""
    rng = np.random.default_rng(2)
    convs = []
    for k, s, p, d in layers:
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
        conv.weight = nn.Parameter(rng.uniform(0.1, 1.0, (1, 1, k, k)))
        convs.append(conv)
    erf = compute_erf(nn.Sequential(*convs), inputs(size=41), str(len(layers) - 1))
    half = (erf.rf[0] - 1) / 2
    assert support_box(erf.map) == (erf.centre[0] - half, erf.centre[0] + half,
                                    erf.centre[1] - half, erf.centre[1] + half)


def test_mixconv_groups_each_see_their_own_kernel():
    model = nn.Sequential(nn.MixConv2d(7, (3, 5, 7)))
    x = inputs(c=7, size=13)
    groups = mixconv_group_erfs(model, x, "0")
    for erf, k in zip(groups, (3, 5, 7)):
        half = (k - 1) // 2
        assert erf.rf == (k, k)
        assert support_box(erf.map) == (6 - half, 6 + half, 6 - half, 6 + half)
        assert np.count_nonzero(erf.map) == k * k
    whole = compute_erf(model, x, "0")
    np.testing.assert_allclose(whole.map, sum(erf.map for erf in groups), rtol=1e-6)


def test_channels_selects_output_channels():
    model = nn.Sequential(nn.MixConv2d(4, (3, 5)))  # channels 0-1: 3x3, 2-3: 5x5
    x = inputs(c=4, size=9)
    by_slice = compute_erf(model, x, "0", channels=slice(0, 2)).map
    by_group = compute_erf(model, x, "0", group=0).map
    np.testing.assert_array_equal(by_slice, by_group)
    assert np.count_nonzero(compute_erf(model, x, "0", channels=[3]).map) == 25


def test_residual_network_erf_stays_inside_the_theoretical_field():
    model = mm.models.mixnet_cifar()
    erf = compute_erf(model, inputs(c=3, size=24).astype(np.float32), "blocks.1.1.conv_dw")  # a residual block
    assert erf.rf == (9, 9)
    lo, hi, _, _ = support_box(erf.map)
    assert erf.centre[0] - 4 <= lo and hi <= erf.centre[0] + 4


def test_default_layer_is_the_last_conv_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.Flatten())
    x = inputs(size=9)
    np.testing.assert_array_equal(effective_receptive_field(model, x), effective_receptive_field(model, x, "2"))


def test_untrained_and_loaded_weights_differ_and_loading_is_used():
    model = conv_stack([np.ones((3, 3))] * 2, padding=1)
    before = effective_receptive_field(model, inputs(size=9), "1")
    state = model.state_dict()
    state["0.weight"] = 2 * state["0.weight"]
    model.load_state_dict(state)
    np.testing.assert_allclose(effective_receptive_field(model, inputs(size=9), "1"), 2 * before)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_model_is_left_untouched(mode):
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.3), nn.Conv2d(3, 2, 3))
    model[3].eval()
    state, rng_state = model.state_dict(), mm.random.get_state()
    erf = compute_erf(model, inputs(n=4, size=11), "3", mode=mode)
    assert erf.map.shape == (11, 11) and erf.map.sum() > 0
    assert [m.training for m in model.modules()] == [True, True, True, True, False]
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert mm.random.get_state() == rng_state


def test_train_mode_uses_batch_statistics():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3))
    x = inputs(n=4, size=11)
    eval_map = compute_erf(model, x, "2", mode="eval").map
    train_map = compute_erf(model, x, "2", mode="train").map
    assert not np.allclose(eval_map, train_map)


# -- erf_summary --------------------------------------------------------------------------------
def test_summary_of_a_delta_is_one_pixel():
    delta = np.zeros((9, 9))
    delta[4, 4] = 3.0
    assert erf_summary(delta, (4, 4)) == {0.2: 1, 0.5: 1, 0.99: 1}


def test_summary_of_a_uniform_square():
    block = np.zeros((15, 15))
    block[3:12, 3:12] = 1.0  # 9x9 centred on (7, 7)
    # a centred s x s square holds s^2 / 81: 5 -> 31% >= 20% (3 -> 11%), 7 -> 60% >= 50% (5 -> 31%), 9 -> 100%
    assert erf_summary(block, (7, 7)) == {0.2: 5, 0.5: 7, 0.99: 9}
    assert erf_summary(block) == {0.2: 5, 0.5: 7, 0.99: 9}  # default centre: centre of mass


def test_summary_with_a_half_pixel_centre_uses_even_sides():
    block = np.zeros((8, 8))
    block[2:6, 2:6] = 1.0  # 4x4 centred on (3.5, 3.5): side 2 holds 4/16
    assert erf_summary(block, (3.5, 3.5), fractions=(0.25, 0.3, 1.0)) == {0.25: 2, 0.3: 4, 1.0: 4}
    assert erf_summary(block) == {0.2: 2, 0.5: 4, 0.99: 4}


@pytest.mark.parametrize("bad, match", [(np.zeros((5, 5)), "no gradient mass"), (np.ones(5), "2-D")])
def test_summary_rejects_bad_maps(bad, match):
    with pytest.raises(ValueError, match=match):
        erf_summary(bad)


# -- bad input ----------------------------------------------------------------------------------
def test_unknown_layer_lists_the_available_names():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"'head' not found.*available layers are: 0, 1"):
        compute_erf(model, inputs(size=9), "head")


def test_input_smaller_than_the_field_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.Conv2d(1, 1, 5, padding=2))  # r = 9
    with pytest.raises(ValueError, match="too small.*9 px"):
        compute_erf(model, inputs(size=8), "1")
    clipped = compute_erf(model, inputs(size=8), "1", allow_clipped=True)
    assert clipped.map.shape == (8, 8)
    compute_erf(model, inputs(size=9), "1")  # just fits


@pytest.mark.parametrize("options, match", [
    (dict(group=0), "needs a MixConv"),
    (dict(mode="test"), "mode"),
    (dict(group=0, channels=[0]), "not both"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        compute_erf(nn.Sequential(nn.Conv2d(1, 2, 3)), inputs(size=9), "0", **options)


def test_bad_group_and_inputs():
    model = nn.Sequential(nn.MixConv2d(4, (3, 5)))
    with pytest.raises(ValueError, match="group must be in 0..1"):
        compute_erf(model, inputs(c=4, size=9), "0", group=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        compute_erf(model, np.zeros((4, 9, 9)), "0")


def test_layer_without_a_spatial_map_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(ValueError, match=r"must output an \(N, C, H, W\) map"):
        compute_erf(model, inputs(size=5), "1")
