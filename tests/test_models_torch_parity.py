"""A whole small MixNet against an equivalent PyTorch network: forward and every parameter's gradient.

The PyTorch network (``minimix.models.torch_mirror``, shared with benchmarks/train_step.py) is built
from the same block table (timm's module names, so ``to_timm_state_dict`` loads into it strictly),
in float64, training mode (batch statistics).
"""
import numpy as np
import pytest
from conftest import require

import minimix as mm
from minimix.models import MIXNET_S, mixnet_cifar, mixnet_s, timm_key_map, to_timm_state_dict
from minimix.models.torch_mirror import torch_mixnet

pytestmark = pytest.mark.usefixtures("each_path")  # every test on the fast and the reference path

torch = require("torch", "PyTorch is the reference for parity tests")


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
    # the kernel study's knobs (minimix.study.kernels): exponential split, dilated 3x3 kernels
    "mixnet_cifar_w0.25_mix3579_exp": (
        lambda: mixnet_cifar(num_classes=10, width_multiplier=0.25, dropout=0.0, kernel_sizes=(3, 5, 7, 9),
                             split="exponential"),
        dict(table=MIXNET_S, width=0.25, stem=8, stem_stride=1, first_downsample_stride=1, head=1024, num_classes=10,
             kernel_sizes=(3, 5, 7, 9), split="exponential")),
    "mixnet_cifar_w0.25_mix3579_dilated": (
        lambda: mixnet_cifar(num_classes=10, width_multiplier=0.25, dropout=0.0, kernel_sizes=(3, 5, 7, 9),
                             dilated=True),
        dict(table=MIXNET_S, width=0.25, stem=8, stem_stride=1, first_downsample_stride=1, head=1024, num_classes=10,
             kernel_sizes=(3, 5, 7, 9), dilated=True)),
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
    ref = torch_mixnet(**torch_kwargs).double()
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
