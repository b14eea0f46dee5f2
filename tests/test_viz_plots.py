"""Receptive-field figures (Agg backend): axes, images, the outline square; and the ``rf`` command."""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from conftest import require  # noqa: E402

require("matplotlib", "the figures need matplotlib")
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import minimix as mm  # noqa: E402
from minimix import nn  # noqa: E402
from minimix.cli import main  # noqa: E402
from minimix.viz import (  # noqa: E402
    ERF,
    compute_erf,
    plot_erfs,
    plot_mixconv_kernels,
    plot_rf_vs_depth,
    receptive_field,
)


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_importing_viz_does_not_load_matplotlib():
    code = "import sys, minimix.viz; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_erf_panels_show_the_maps_and_the_theoretical_square():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 5, padding=2))
    x = np.random.default_rng(0).standard_normal((2, 2, 15, 12)).astype(np.float32)
    erfs = [compute_erf(model, x, "0"), compute_erf(model, x, "1")]
    fig = plot_erfs(erfs, titles=["3x3", "then 5x5"])
    axes = image_axes(fig)
    assert len(axes) == 2
    for ax, erf in zip(axes, erfs):
        np.testing.assert_array_equal(ax.images[0].get_array(), erf.map)
        square, = [p for p in ax.patches if isinstance(p, Rectangle)]
        row, col = erf.centre
        r = max(erf.rf)
        assert (square.get_width(), square.get_height()) == (r, r)
        assert square.get_xy() == (col - r / 2, row - r / 2)  # pixel i spans i - 0.5 .. i + 0.5
        assert ax.get_xlim() == (-0.5, 11.5) and ax.get_ylim() == (14.5, -0.5)
    assert [ax.get_title().splitlines()[0] for ax in axes] == ["3x3", "then 5x5"]
    assert [ax.get_title().splitlines()[1] for ax in axes] == ["r = 3", "r = 7"]


def test_log_scale_floors_small_values():
    erf_map = np.zeros((9, 9))
    erf_map[4, 4], erf_map[4, 5] = 1.0, 1e-9
    fig = plot_erfs([ERF(map=erf_map, centre=(4, 4), rf=(3, 3), layer="x", unit=(0, 0))], log=True, log_floor=1e-4)
    image = image_axes(fig)[0].images[0]
    assert isinstance(image.norm, LogNorm) and (image.norm.vmin, image.norm.vmax) == (1e-4, 1.0)
    assert image.get_array().min() == 1e-4


def test_rf_vs_depth_has_one_line_per_model():
    stack = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]
    curves = {"3x3": receptive_field(nn.Sequential(*stack), (1, 16, 16)),
              "5x5": receptive_field(nn.Sequential(nn.Conv2d(1, 1, 5, padding=2)), (1, 16, 16))}
    fig = plot_rf_vs_depth(curves, image_size=16)
    ax, = fig.axes
    lines = {line.get_label(): line for line in ax.lines}
    assert list(lines["3x3"].get_ydata()) == [3, 5, 7] and list(lines["3x3"].get_xdata()) == [1, 2, 3]
    assert list(lines["5x5"].get_ydata()) == [5]
    assert list(lines["input size (16 px)"].get_ydata()) == [16, 16]


def test_mixconv_kernels_are_drawn_per_group():
    mix = nn.MixConv2d(7, (3, 5, 7))  # splits 3, 2, 2
    fig = plot_mixconv_kernels(mix, max_channels=2)
    axes = image_axes(fig)
    assert len(fig.axes) == 3 * 2 and len(axes) == 6
    shapes = [ax.images[0].get_array().shape for ax in axes]
    assert shapes == [(3, 3), (3, 3), (5, 5), (5, 5), (7, 7), (7, 7)]
    np.testing.assert_array_equal(axes[4].images[0].get_array(), mix.convs[2].weight.data[0, 0])


def test_figures_save_as_png(tmp_path):
    erf_map = np.ones((5, 5))
    plot_erfs([ERF(map=erf_map, centre=(2, 2), rf=(5, 5), layer="x", unit=(0, 0))]).savefig(tmp_path / "erf.png")
    assert (tmp_path / "erf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("call, match", [
    (lambda: plot_erfs([]), "empty"),
    (lambda: plot_erfs([ERF(np.ones((3, 3)), (1, 1), (3, 3), "x", (0, 0))], titles=["a", "b"]), "2 titles"),
    (lambda: plot_rf_vs_depth({}), "empty"),
])
def test_bad_plot_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- the command line -----------------------------------------------------------------------------
def test_cli_lists_layers(capsys):
    assert main(["rf", "--model", "mixnet_cifar", "--kernels", "3", "--list-layers"]) == 0
    out = capsys.readouterr().out
    assert "r per group" in out and "conv_stem" in out and "conv_head" in out


def test_cli_draws_a_mixconv_layer(tmp_path, capsys):
    out = tmp_path / "erf.png"
    status = main(["rf", "--model", "mixnet_cifar", "--layer", "blocks.2.0.conv_dw", "--batch", "2",
                   "--out", str(out), "--kernels-out", str(tmp_path / "kernels.png")])
    assert status == 0 and out.stat().st_size > 0 and (tmp_path / "kernels.png").stat().st_size > 0
    printed = capsys.readouterr().out
    for group in ("3x3", "5x5", "7x7"):  # blocks.2.0 mixes 3x3, 5x5 and 7x7 kernels
        assert f"blocks.2.0.conv_dw {group} group: theoretical r" in printed


def test_cli_uses_checkpoint_weights(tmp_path, capsys):
    from minimix.training import TrainConfig, save_checkpoint

    config = TrainConfig(model="mixnet_cifar", model_kwargs={"kernel_sizes": [3]})
    model = mm.models.mixnet_cifar(kernel_sizes=(3,))
    state = model.state_dict()
    state["conv_stem.weight"] = np.zeros_like(state["conv_stem.weight"])
    state["conv_stem.weight"][:, :, 1, 1] = 1.0  # only the centre tap: the ERF is a single pixel
    save_checkpoint(tmp_path, {"model": state, "config": dataclasses.asdict(config), "epoch": 1})
    assert main(["rf", "--checkpoint", str(tmp_path), "--layer", "conv_stem", "--batch", "2"]) == 0
    assert "conv_stem: theoretical r = 3, ERF squares holding 20/50/99%: 1/1/1 px" in capsys.readouterr().out
    assert main(["rf", "--layer", "conv_stem", "--kernels", "3", "--batch", "2"]) == 0
    assert "conv_stem: theoretical r = 3, ERF squares holding 20/50/99%: 1/1/1 px" not in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--layer", "nope"], "available layers are: conv_stem"),
    (["--layer", "blocks.2.0.conv_dw", "--input-size", "8"], "too small"),
])
def test_cli_reports_bad_input(argv, message, capsys):
    assert main(["rf", "--model", "mixnet_cifar", "--kernels", "3", "--batch", "1", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_on_real_images(tmp_path, monkeypatch, capsys):
    """An image-folder dataset ({train,test}/<class>/*.png) stands in for CIFAR-10: 32x32 images."""
    from PIL import Image

    from minimix.data import CLASSES

    monkeypatch.setenv("MINIMIX_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CLASSES:
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "0.png")
    common = ["rf", "--model", "mixnet_cifar", "--kernels", "3", "--batch", "3",
              "--images", "cifar", "--data", str(tmp_path / "data")]
    assert main([*common, "--layer", "blocks.1.1.conv_dw"]) == 0  # r = 9 fits in 32 px
    assert "3 cifar images of 32x32" in capsys.readouterr().out
    assert main(common) == 2  # the last layer's field (r = 107) does not
    assert "too small" in capsys.readouterr().err
