"""Module: parameter discovery and naming, state_dict round trips and errors, modes, repr, forward hooks, layers."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
from minimix import nn
from minimix.nn.module import RemovableHandle, StateDictError


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)
        self.act = nn.SiLU()
        self.register_buffer("running", np.zeros(n, np.float32))

    def forward(self, x):
        return self.act(self.fc(x))


class Net(nn.Module):
    """Exercises every discovery rule: attribute order, a ModuleList, a ParameterList,
    a Sequential, a shared parameter, a module-less attribute and a buffer."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.blocks = nn.ModuleList([Block(4), Block(4)])
        self.note = "not a module"
        self.head = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Linear(3, 2, bias=False))
        self.extras = nn.ParameterList([nn.Parameter(np.zeros((2, 2), np.float32)), np.zeros(2, np.float32)])
        self.tied = self.scale  # the same Parameter again: listed once

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x * self.scale)


EXPECTED_PARAMETERS = [  # the order of TorchNet's named_parameters (test_discovery_matches_torch)
    ("scale", (1,)),
    ("blocks.0.fc.weight", (4, 4)),
    ("blocks.0.fc.bias", (4,)),
    ("blocks.1.fc.weight", (4, 4)),
    ("blocks.1.fc.bias", (4,)),
    ("head.0.weight", (3, 4)),
    ("head.0.bias", (3,)),
    ("head.3.weight", (2, 3)),
    ("extras.0", (2, 2)),
    ("extras.1", (2,)),
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
    assert names == ["", "blocks", "blocks.0", "blocks.0.fc", "blocks.0.act", "blocks.1", "blocks.1.fc",
                     "blocks.1.act", "head", "head.0", "head.1", "head.2", "head.3", "extras"]
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


def _x(*shape, seed=0):
    return mm.Tensor(np.random.default_rng(seed).standard_normal(shape))


class Scale(nn.Module):
    """forward(x, factor=1.0): a keyword argument, to check that hooks leave keywords alone."""

    def forward(self, x, factor=1.0):
        return x * factor


def test_forward_pre_hook_replaces_the_positional_args():
    layer = Scale()
    x = _x(2, 3)
    seen = []
    with layer.register_forward_pre_hook(lambda m, args: seen.append(args)):  # None: args unchanged
        np.testing.assert_array_equal(layer(x, factor=3.0).data, 3 * x.data)
    assert seen == [(x,)], "pre-hooks see the positional args as a tuple, keywords go to forward unchanged"
    with layer.register_forward_pre_hook(lambda m, args: args[0] + 1):  # a non-tuple becomes a 1-tuple
        np.testing.assert_array_equal(layer(x, factor=2.0).data, 2 * (x.data + 1))
    with layer.register_forward_pre_hook(lambda m, args: (args[0] * 10,)):
        np.testing.assert_array_equal(layer(x).data, 10 * x.data)
    np.testing.assert_array_equal(layer(x).data, x.data)


def test_forward_hook_sees_args_and_output_and_may_replace_the_output():
    layer = Scale()
    x = _x(2, 3)
    seen = []

    def watch(module, args, output):
        seen.append((module, args, output))

    with layer.register_forward_hook(watch):
        out = layer(x, factor=2.0)
    ((module, args, output),) = seen
    assert module is layer and args == (x,) and output is out
    with layer.register_forward_pre_hook(lambda m, args: args[0] * 0), layer.register_forward_hook(watch):
        layer(x)
    assert not seen[-1][1][0].data.any(), "a forward hook sees the args the pre-hooks produced"
    with layer.register_forward_hook(lambda m, args, out: out - 1):
        np.testing.assert_array_equal(layer(x).data, x.data - 1)


def test_hooks_run_in_registration_order():
    layer = Scale()
    calls = []
    pre_a = layer.register_forward_pre_hook(lambda m, args: calls.append("pre a") or args[0] + 1)
    post_a = layer.register_forward_hook(lambda m, args, out: calls.append("post a") or out * 10)
    layer.register_forward_pre_hook(lambda m, args: calls.append("pre b") or args[0] * 2)
    layer.register_forward_hook(lambda m, args, out: calls.append("post b") or out + 5)
    out = layer(mm.Tensor(np.array([1.0])))
    assert calls == ["pre a", "pre b", "post a", "post b"]
    assert out.data[0] == ((1 + 1) * 2) * 10 + 5
    pre_a.remove()
    post_a.remove()
    calls.clear()
    assert layer(mm.Tensor(np.array([1.0]))).data[0] == 1 * 2 + 5 and calls == ["pre b", "post b"]


def test_handle_remove_is_idempotent_and_removes_only_its_hook():
    layer = Scale()
    calls = []
    first = layer.register_forward_hook(lambda m, a, o: calls.append("first"))
    second = layer.register_forward_hook(lambda m, a, o: calls.append("second"))
    assert isinstance(first, RemovableHandle) and first.id != second.id
    first.remove()
    first.remove()  # again: nothing happens
    layer(_x(2))
    assert calls == ["second"]
    second.remove()
    assert not layer._forward_hooks and not layer._forward_pre_hooks
    layer(_x(2))
    assert calls == ["second"]


def test_a_hook_may_remove_itself_while_running():
    layer = Scale()
    calls = []
    handles = []

    def once(module, args, output):
        calls.append("once")
        handles[0].remove()

    handles.append(layer.register_forward_hook(once))
    layer.register_forward_hook(lambda m, a, o: calls.append("always"))
    layer(_x(2))
    layer(_x(2))
    assert calls == ["once", "always", "always"]


def test_handle_as_context_manager_removes_the_hook_even_on_error():
    layer = Scale()
    with layer.register_forward_hook(lambda m, a, o: o * 0) as handle:
        assert isinstance(handle, RemovableHandle) and len(layer._forward_hooks) == 1
        assert not layer(_x(3)).data.any()
    assert not layer._forward_hooks

    def fail(module, args, output):
        raise KeyError("stop")

    with pytest.raises(KeyError), layer.register_forward_hook(fail):
        layer(_x(3))
    assert not layer._forward_hooks
    np.testing.assert_array_equal(layer(_x(3)).data, _x(3).data)


def test_hooks_are_not_state_parameters_children_or_repr():
    net = Net()
    expected_state, expected_repr = list(net.state_dict()), repr(net)
    expected_modules = [n for n, _ in net.named_modules()]
    net.register_forward_hook(lambda m, a, o: None)
    net.blocks[0].register_forward_pre_hook(lambda m, a: None)
    net.blocks[0].fc.register_forward_hook(lambda m, a, o: None)
    assert list(net.state_dict()) == expected_state
    assert [(n, p.shape) for n, p in net.named_parameters()] == EXPECTED_PARAMETERS
    assert [n for n, _ in net.named_modules()] == expected_modules
    assert repr(net) == expected_repr
    Net().load_state_dict(net.state_dict())  # strict: no extra keys


def test_hooks_observe_the_activations_of_calling_the_layers_by_hand():
    """A hook on every module of a model sees exactly what running its layers one by one gives."""
    mm.manual_seed(0)
    net = Net().eval()
    x = mm.Tensor(randn(3, 4).astype(np.float32))
    seen = {}

    def record(name):
        def hook(module, args, output):
            seen[name] = (args[0], output)  # returns None: the output is kept
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in net.named_modules()]
    try:
        out = net(x)
    finally:
        for handle in handles:
            handle.remove()
    assert not any(m._forward_hooks for m in net.modules())

    expected = {}
    h = x
    for i, block in enumerate(net.blocks):
        expected[f"blocks.{i}.fc"] = (h, block.fc(h))
        expected[f"blocks.{i}.act"] = (expected[f"blocks.{i}.fc"][1], block.act(expected[f"blocks.{i}.fc"][1]))
        expected[f"blocks.{i}"] = (h, expected[f"blocks.{i}.act"][1])
        h = expected[f"blocks.{i}"][1]
    h = h * net.scale
    head_in = h
    for j, layer in enumerate(net.head.layers):
        expected[f"head.{j}"] = (h, layer(h))
        h = expected[f"head.{j}"][1]
    expected["head"] = (head_in, h)
    expected[""] = (x, h)
    assert set(seen) == set(expected)
    for name, (inp, output) in expected.items():
        np.testing.assert_array_equal(seen[name][0].data, inp.data, err_msg=f"{name} input")
        np.testing.assert_array_equal(seen[name][1].data, output.data, err_msg=f"{name} output")
    np.testing.assert_array_equal(out.data, h.data)


def test_hook_semantics_match_torch():
    """The same hooks on a minimix and a torch Linear change the result, and its gradients, alike."""
    mm.manual_seed(0)
    layer = nn.Linear(4, 3)
    for p in layer.parameters():
        p.data = p.data.astype(np.float64)
    reference = torch.nn.Linear(4, 3).double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    calls = {"minimix": [], "torch": []}

    def install(module, log):
        return [
            module.register_forward_pre_hook(lambda m, args: log.append("pre 1") or args[0] * 2),
            module.register_forward_pre_hook(lambda m, args: log.append("pre 2")),
            module.register_forward_hook(lambda m, args, out: log.append("post 1") or out * args[0].sum()),
            module.register_forward_hook(lambda m, args, out: log.append("post 2") or out.tanh()),
        ]

    mm_handles, torch_handles = install(layer, calls["minimix"]), install(reference, calls["torch"])
    x = randn(5, 4)
    check_parity(layer, reference, [x], np.float64)
    assert calls["minimix"] == calls["torch"] == ["pre 1", "pre 2", "post 1", "post 2"]
    for handle in mm_handles + torch_handles:
        handle.remove()
        handle.remove()
    check_parity(layer, reference, [x], np.float64)


def test_registering_a_hook_needs_super_init():
    class Broken(nn.Module):
        def __init__(self):
            pass

    with pytest.raises(RuntimeError, match="super\\(\\).__init__"):
        Broken().register_forward_hook(lambda m, a, o: None)


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


# -- issue 16, item 7: ModuleList / ParameterList, plain lists, apply, to / double / float, requires_grad_ ------


class TorchBlock(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = torch.nn.Linear(n, n)
        self.act = torch.nn.SiLU()
        self.register_buffer("running", torch.zeros(n))


class TorchNet(torch.nn.Module):
    """Net, written for PyTorch."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.blocks = torch.nn.ModuleList([TorchBlock(4), TorchBlock(4)])
        self.note = "not a module"
        self.head = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                        torch.nn.Linear(3, 2, bias=False))
        self.extras = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(2, 2)), torch.zeros(2)])
        self.tied = self.scale


def test_discovery_matches_torch():
    """Parameter names and order, module names and order, state_dict keys: as torch's for the same net."""
    ours, theirs = Net(), TorchNet()
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    # a difference on purpose: minimix's state_dict names a tied parameter once, torch's under every name
    assert sorted(ours.state_dict()) == sorted(set(theirs.state_dict()) - {"tied"})
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]


def test_apply_visits_children_first_then_self_as_torch():
    ours, theirs = Net(), TorchNet()
    order = {"minimix": [], "torch": []}
    for model, log in ((ours, order["minimix"]), (theirs, order["torch"])):
        names = {id(m): n for n, m in model.named_modules()}
        assert model.apply(lambda m, names=names, log=log: log.append(names[id(m)])) is model
    assert order["minimix"] == order["torch"]
    assert order["minimix"][-1] == "" and order["minimix"][0] == "blocks.0.fc"


def test_apply_initialises_weights():
    net = Net()

    def zero_linear(m):
        if isinstance(m, nn.Linear):
            m.weight.data[...] = 0

    net.apply(zero_linear)
    assert all(not m.weight.data.any() for m in net.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("holder, kind", [
    (lambda: [nn.Linear(2, 2), nn.ReLU()], "ModuleList"),
    (lambda: (nn.Linear(2, 2),), "ModuleList"),
    (lambda: [nn.Parameter(np.ones(2, np.float32))], "ParameterList"),
], ids=["list of modules", "tuple of modules", "list of parameters"])
def test_a_plain_list_registers_nothing_and_warns_once(holder, kind):
    """As in PyTorch: nothing in a plain list is registered; minimix also says what to use instead."""
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.items = holder()

    class TorchHolder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.items = [torch.nn.Linear(2, 2)]

    with pytest.warns(UserWarning, match=f"Holder.items is a plain .* registers nothing.*nn.{kind}"):
        first = Holder()
    assert first.parameters() == [] and list(first.state_dict()) == []
    assert [n for n, _ in first.named_modules()] == [""]
    assert list(TorchHolder().parameters()) == [] and list(TorchHolder().state_dict()) == []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second instance (or assignment) of the same class: silent
        Holder().items = holder()


def test_lists_of_other_things_do_not_warn():
    import warnings

    class Settings(nn.Module):
        def __init__(self):
            super().__init__()
            self.kernel_sizes = [3, 5, 7]
            self.empty = []
            self.tensors = [mm.Tensor(np.ones(2))]  # plain tensors are never registered: nothing to warn about

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Settings().parameters() == []


def test_parameter_list():
    plist = nn.ParameterList([np.ones((2, 3), np.float32)]).append(mm.Tensor(np.zeros(4, np.float32)))
    plist.extend([nn.Parameter(np.ones(1, np.float32))])
    assert len(plist) == 3 and all(isinstance(p, nn.Parameter) and p.requires_grad for p in plist)
    assert [(n, p.shape) for n, p in plist.named_parameters()] == [("0", (2, 3)), ("1", (4,)), ("2", (1,))]
    assert plist[1] is plist.parameters()[1]
    plist[2] = np.full(1, 5.0, np.float32)
    assert plist[2].data[0] == 5.0 and plist.parameters()[2] is plist[2]
    assert repr(plist).splitlines() == ["ParameterList(", "  (0): Parameter of shape (2, 3), dtype float32",
                                        "  (1): Parameter of shape (4,), dtype float32",
                                        "  (2): Parameter of shape (1,), dtype float32", ")"]
    with pytest.raises(TypeError, match="ParameterList: item 3 must be a Parameter, Tensor or NumPy array, got str"):
        plist.append("w")
    with pytest.raises(TypeError, match="container"):
        plist(mm.Tensor(np.ones(2)))
    with pytest.raises(TypeError, match="ModuleList.append: expected a Module, got int"):
        nn.ModuleList().append(3)
    with pytest.raises(TypeError, match="Sequential: item 1 must be a Module, got function"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_parameter_list_parameters_are_trained():
    """The optimizer sees a ParameterList's parameters and moves them, as a torch twin's."""
    net, twin = Net(), TorchNet()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()}, strict=False)
    for p in net.extras:
        p.grad = np.ones(p.shape, np.float32)
    for p in twin.extras:
        p.grad = torch.ones(p.shape)
    mm.optim.SGD(net.parameters(), lr=0.5).step()
    torch.optim.SGD(twin.parameters(), lr=0.5).step()
    for a, b in zip(net.extras, twin.extras):
        np.testing.assert_array_equal(a.data, b.detach().numpy())
        assert a.data.any()


def conv_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 5))


def torch_conv_net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5))


def test_double_and_float_convert_parameters_gradients_and_float_buffers_like_torch():
    mm.manual_seed(0)
    model, twin = conv_net(), torch_conv_net()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}, strict=False)
    params = model.parameters()
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    assert model.double() is model
    twin.double()
    assert model.parameters() == params and all(a is b for a, b in zip(model.parameters(), params))
    ours = model.state_dict()
    for key, value in twin.state_dict().items():
        if key in ours:  # the dtype of every entry, num_batches_tracked (int64) included, as torch's
            assert ours[key].dtype == value.numpy().dtype, key
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in params)
    assert model[1].running_mean.dtype == np.float64 and model[1].running_var.dtype == np.float64
    if hasattr(model[1], "num_batches_tracked"):
        assert model[1].num_batches_tracked.dtype == np.int64
    model.eval(), twin.eval()
    check_parity(model, twin, [randn(2, 3, 5, 5)], np.float64)  # float64 end to end, tight
    assert model.float() is model
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in params)
    assert model[1].running_mean.dtype == np.float32


@pytest.mark.parametrize("call", [lambda m: m.to(np.float64), lambda m: m.to(dtype="float64"),
                                  lambda m: m.to("cpu", np.float64), lambda m: m.to(device="cpu", dtype=np.float64)],
                         ids=["to(dtype)", "to(dtype=str)", "to(cpu, dtype)", "to(device=, dtype=)"])
def test_to_forms(call):
    model = conv_net()
    assert call(model) is model
    assert all(p.dtype == np.float64 for p in model.parameters())


def test_to_cpu_is_a_no_op_and_other_devices_and_dtypes_are_refused():
    model = conv_net()
    before = [p.data for p in model.parameters()]
    assert model.to("cpu") is model and model.to("cpu:0") is model
    assert all(p.data is b for p, b in zip(model.parameters(), before)), "to('cpu') copies nothing"
    with pytest.raises(ValueError, match="Sequential.to: minimix runs on the CPU only; device must be 'cpu', got 'cuda'"):
        model.to("cuda")
    with pytest.raises(ValueError, match="got 'cuda:1'"):
        model.to(device="cuda:1")
    with pytest.raises(TypeError, match="only floating dtypes are allowed \\(as in PyTorch\\), got int64"):
        model.to(np.int64)
    with pytest.raises(TypeError, match="nn.Module.to only accepts floating point"):
        torch_conv_net().to(torch.int64)
    with pytest.raises(TypeError, match="expected a dtype .* or a device 'cpu', got 'gpu'"):
        model.to("gpu")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['memory'\\]"):
        model.to(memory=1)
    assert all(p.dtype == np.float32 for p in model.parameters()), "a refused call converts nothing"


def test_requires_grad_freezes_and_unfreezes_like_torch():
    model, twin = conv_net(), torch_conv_net()
    assert model.requires_grad_(False) is model
    twin.requires_grad_(False)
    assert [p.requires_grad for p in model.parameters()] == [p.requires_grad for p in twin.parameters()]
    x = mm.Tensor(randn(2, 3, 5, 5).astype(np.float32), requires_grad=True)
    model(x).sum().backward()
    assert all(p.grad is None for p in model.parameters()) and x.grad is not None
    model[4].requires_grad_()
    assert [p.requires_grad for p in model.parameters()] == [False] * 4 + [True] * 2
    with pytest.raises(TypeError, match="requires_grad must be True or False, got 'no'"):
        model.requires_grad_("no")
