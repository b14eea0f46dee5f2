"""Module: parameter discovery and naming, state_dict round trips and errors, modes, repr, layers."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
from minimix import nn
from minimix.nn.module import StateDictError


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)
        self.act = nn.SiLU()
        self.register_buffer("running", np.zeros(n, np.float32))

    def forward(self, x):
        return self.act(self.fc(x))


class Net(nn.Module):
    """Exercises every discovery rule: attribute order, a list of modules, a list of parameters,
    a Sequential, a shared parameter, a module-less attribute and a buffer."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.blocks = [Block(4), Block(4)]
        self.note = "not a module"
        self.head = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Linear(3, 2, bias=False))
        self.extras = [nn.Parameter(np.zeros((2, 2), np.float32)), nn.Parameter(np.zeros(2, np.float32))]
        self.tied = self.scale  # the same Parameter again: listed once

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x * self.scale)


EXPECTED_PARAMETERS = [
    ("scale", (1,)),
    ("extras.0", (2, 2)),
    ("extras.1", (2,)),
    ("blocks.0.fc.weight", (4, 4)),
    ("blocks.0.fc.bias", (4,)),
    ("blocks.1.fc.weight", (4, 4)),
    ("blocks.1.fc.bias", (4,)),
    ("head.0.weight", (3, 4)),
    ("head.0.bias", (3,)),
    ("head.3.weight", (2, 3)),
]


def test_named_parameters_names_and_order():
    """A module's own parameters first (in assignment order), then its children depth first."""
    net = Net()
    assert [(n, p.shape) for n, p in net.named_parameters()] == EXPECTED_PARAMETERS
    assert len(net.parameters()) == len(EXPECTED_PARAMETERS)
    assert net.num_parameters() == sum(int(np.prod(s)) for _, s in EXPECTED_PARAMETERS)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_named_modules_and_buffers():
    net = Net()
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "blocks.0", "blocks.0.fc", "blocks.0.act", "blocks.1", "blocks.1.fc", "blocks.1.act",
                     "head", "head.0", "head.1", "head.2", "head.3"]
    assert [n for n, _ in net.named_buffers()] == ["blocks.0.running", "blocks.1.running"]


def test_state_dict_holds_copies_of_parameters_and_buffers():
    net = Net()
    state = net.state_dict()
    assert list(state) == [n for n, _ in EXPECTED_PARAMETERS] + ["blocks.0.running", "blocks.1.running"]
    assert all(type(v) is np.ndarray for v in state.values())
    state["scale"][0] = 42.0
    assert net.scale.data[0] == 1.0, "state_dict must copy, not alias"


def test_load_state_dict_round_trip():
    mm.manual_seed(0)
    source = Net()
    source.blocks[1].register_buffer("running", np.arange(4, dtype=np.float32))
    mm.manual_seed(1)
    target = Net()
    weight_array = target.head[0].weight.data
    x = mm.Tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    assert not np.allclose(source.eval()(x).data, target.eval()(x).data)
    target.load_state_dict(source.state_dict())
    np.testing.assert_array_equal(source(x).data, target(x).data)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert target.head[0].weight.data is weight_array, "loading is in place"


def test_load_state_dict_casts_to_the_model_dtype():
    net = Net()
    state = {k: v.astype(np.float64) for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert all(p.dtype == np.float32 for p in net.parameters())


def test_load_state_dict_reports_every_problem_at_once_and_loads_nothing():
    net = Net()
    before = net.state_dict()
    state = net.state_dict()
    del state["head.0.bias"], state["blocks.1.running"]
    state["head.9.weight"] = np.zeros(3)
    state["blocks.0.fc.weight"] = np.zeros((4, 5))
    state["extras.0"] = np.zeros(4)
    state["scale"] = np.full(1, 7.0)
    with pytest.raises(StateDictError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    for fragment in ["missing keys", "head.0.bias", "blocks.1.running", "unexpected keys", "head.9.weight",
                     "shape mismatch", "blocks.0.fc.weight: checkpoint (4, 5) vs model (4, 4)",
                     "extras.0: checkpoint (4,) vs model (2, 2)"]:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "\\n" not in message, "the message must be readable (real newlines, not KeyError's repr)"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert net.scale.data[0] == before["scale"][0], "nothing may be loaded when anything is wrong"


def test_load_state_dict_non_strict_skips_missing_and_unexpected():
    net = Net()
    net.load_state_dict({"scale": np.full(1, 3.0), "something.else": np.zeros(2)}, strict=False)
    assert net.scale.data[0] == 3.0
    with pytest.raises(StateDictError, match="shape mismatch"):
        net.load_state_dict({"scale": np.zeros(2)}, strict=False)


def test_train_and_eval_propagate_to_every_module():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_dropout_module_follows_the_mode():
    drop = nn.Dropout(0.5)
    x = mm.Tensor(np.ones((20, 20), np.float32))
    assert np.any(drop(x).data == 0)
    np.testing.assert_array_equal(drop.eval()(x).data, x.data)


def test_zero_grad():
    net = Net()
    x = mm.Tensor(np.ones((2, 4), np.float32))
    net(x).sum().backward()
    assert net.blocks[0].fc.weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_repr():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Dropout(0.25), nn.Flatten()))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=3, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Dropout(p=0.25)\n"
        "    (1): Flatten(start_dim=1, end_dim=-1)\n"
        "  )\n"
        ")"
    )


def test_forgetting_super_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match="super\\(\\).__init__"):
        Broken().parameters()


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2)]).append(nn.Linear(2, 3)).extend([nn.ReLU()])
    assert len(layers) == 3 and isinstance(layers[1], nn.Linear)
    assert [n for n, _ in layers.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(TypeError, match="container"):
        layers(mm.Tensor(np.ones(2)))


def test_linear_init_matches_torch_bounds():
    """PyTorch initialises W and b uniformly in +-1/sqrt(in_features)."""
    layer = nn.Linear(100, 50)
    bound = 1 / np.sqrt(100)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.9 * bound


@DTYPES
@pytest.mark.parametrize(
    "make, torch_make",
    [
        (nn.ReLU, torch.nn.ReLU),
        (nn.SiLU, torch.nn.SiLU),
        (nn.Sigmoid, torch.nn.Sigmoid),
        (nn.Tanh, torch.nn.Tanh),
        (nn.Flatten, torch.nn.Flatten),
        (lambda: nn.Flatten(0, 1), lambda: torch.nn.Flatten(0, 1)),
        (nn.Identity, torch.nn.Identity),
    ],
    ids=["ReLU", "SiLU", "Sigmoid", "Tanh", "Flatten", "Flatten(0,1)", "Identity"],
)
def test_layers_match_torch(make, torch_make, dtype):
    check_parity(make(), torch_make(), [randn(1, 3, 2, 2)], dtype)


@DTYPES
def test_linear_module_and_sequential_match_torch(dtype):
    mm.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.SiLU(), nn.Linear(3, 2))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.SiLU(), torch.nn.Linear(3, 2)).to(
        torch.float64 if dtype == np.float64 else torch.float32
    )
    reference.load_state_dict({k: torch.from_numpy(v.astype(dtype)) for k, v in model.state_dict().items()})
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    x = randn(5, 4).astype(dtype)
    out = model(mm.Tensor(x, requires_grad=True))
    expected = reference(torch.from_numpy(x))
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12)
    out.sum().backward()
    expected.sum().backward()
    for (name, p), (tname, tp) in zip(model.named_parameters(), reference.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
