"""Optimizers and schedules against torch.optim: several steps, parameter groups, checkpoints."""
import copy
import json
import math
import tracemalloc

import numpy as np
import pytest
from parity import DTYPES, torch

import minimix as mm
from minimix import nn, optim
from minimix.optim import lr_scheduler

SHAPES = [(3, 4), (4,), (1, 2, 3, 3)]
STEPS = 6
TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-5, atol=1e-6)}


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def gradients(dtype, step):
    """A different gradient per step (and none at all for the last parameter at step 2)."""
    rng = np.random.default_rng(100 + step)
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    if step == 2:
        grads[-1] = None
    return grads


def groups_of(params, grouped):
    """Either a flat list, or two groups with their own lr / weight decay."""
    if not grouped:
        return params
    return [{"params": params[:2], "weight_decay": 0.05}, {"params": params[2:], "lr": 0.003}]


def run(library, cls_name, kwargs, dtype, grouped, steps=STEPS, params=None):
    """Run ``steps`` optimizer steps with the fixed gradients; return the final parameter values."""
    values = make_params(dtype) if params is None else params
    if library == "minimix":
        params = [nn.Parameter(v.copy()) for v in values]
        opt = getattr(optim, cls_name)(groups_of(params, grouped), **kwargs)
    else:
        params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
        opt = getattr(torch.optim, cls_name)(groups_of(params, grouped), **kwargs)
    for step in range(steps):
        for p, g in zip(params, gradients(dtype, step)):
            p.grad = None if g is None else (g.copy() if library == "minimix" else torch.from_numpy(g.copy()))
        opt.step()
    return [p.data if library == "minimix" else p.detach().numpy() for p in params], opt


CONFIGS = {
    "SGD": dict(lr=0.1),
    "SGD momentum": dict(lr=0.1, momentum=0.9),
    "SGD momentum dampening": dict(lr=0.1, momentum=0.9, dampening=0.3),
    "SGD nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "SGD nesterov weight_decay": dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-2),
    "SGD weight_decay": dict(lr=0.05, weight_decay=0.1),
    "Adam": dict(lr=0.01),
    "Adam weight_decay": dict(lr=0.01, weight_decay=0.1),
    "Adam amsgrad": dict(lr=0.01, amsgrad=True),
    "Adam all": dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3, amsgrad=True),
    "AdamW amsgrad": dict(lr=0.01, amsgrad=True, weight_decay=0.1),
    "AdamW": dict(lr=0.01),
    "AdamW no decay": dict(lr=0.01, weight_decay=0.0),
    "AdamW betas eps": dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3),
    "RMSprop": dict(lr=0.01),
    "RMSprop momentum": dict(lr=0.01, momentum=0.9),
    "RMSprop centered": dict(lr=0.01, centered=True),
    "RMSprop all": dict(lr=0.01, alpha=0.9, eps=1e-3, momentum=0.5, centered=True, weight_decay=0.1),
}


@DTYPES
@pytest.mark.parametrize("grouped", [False, True], ids=["one group", "two groups"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_torch_optim(config, grouped, dtype):
    cls_name = config.split()[0]
    ours, _ = run("minimix", cls_name, CONFIGS[config], dtype, grouped)
    theirs, _ = run("torch", cls_name, CONFIGS[config], dtype, grouped)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, err_msg=f"parameter {i}", **TOLERANCE[dtype])


def take_steps(params, optimizer, steps):
    for step in steps:
        for p, g in zip(params, gradients(np.float32, step)):
            p.grad = g
        optimizer.step()


@pytest.mark.parametrize("config", ["SGD nesterov weight_decay", "SGD momentum dampening", "Adam all", "AdamW",
                                    "RMSprop all"])
def test_state_dict_round_trip_resumes_exactly(config):
    """Save after 3 steps and keep going; a fresh optimizer loaded from the save must follow bit for bit."""
    cls_name, kwargs = config.split()[0], CONFIGS[config]
    params = [nn.Parameter(v) for v in make_params(np.float32)]
    opt = getattr(optim, cls_name)(groups_of(params, True), **kwargs)
    take_steps(params, opt, range(3))
    saved_values = [p.data.copy() for p in params]
    saved = copy.deepcopy(opt.state_dict())
    json.dumps(saved["param_groups"])  # hyperparameters are plain JSON-friendly values
    take_steps(params, opt, range(3, STEPS))  # the uninterrupted run

    resumed = [nn.Parameter(v) for v in saved_values]
    fresh = getattr(optim, cls_name)(groups_of(resumed, True), lr=123.0)  # hyperparameters come from the save
    fresh.load_state_dict(saved)
    take_steps(resumed, fresh, range(3, STEPS))
    for a, b in zip(resumed, params):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("config", ["SGD momentum dampening", "Adam all", "AdamW", "RMSprop all"])
def test_state_dict_matches_torch_structure_and_values(config):
    """After the same steps, our state_dict has torch's layout: the same parameter indices, the same
    state entries with the same values (NumPy arrays here), and torch's hyperparameter names."""
    cls_name = config.split()[0]
    _, ours = run("minimix", cls_name, CONFIGS[config], np.float64, grouped=True)
    _, theirs = run("torch", cls_name, CONFIGS[config], np.float64, grouped=True)
    ours, theirs = ours.state_dict(), theirs.state_dict()
    assert sorted(ours["state"]) == sorted(theirs["state"])
    for index, state in theirs["state"].items():
        assert sorted(ours["state"][index]) == sorted(state), f"parameter {index}"
        for field, value in state.items():
            assert isinstance(ours["state"][index][field], np.ndarray)
            np.testing.assert_allclose(ours["state"][index][field], value.numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"parameter {index}: {field}")
    for mine, reference in zip(ours["param_groups"], theirs["param_groups"]):
        assert mine["params"] == reference["params"]
        for key, value in mine.items():
            assert key in reference, f"{key!r} is not one of torch's group entries"
            expected = list(reference[key]) if isinstance(reference[key], tuple) else reference[key]
            assert value == expected, key


def test_state_dict_layout():
    params = [nn.Parameter(v) for v in make_params(np.float32)]
    opt = optim.SGD(groups_of(params, True), lr=0.1, momentum=0.9)
    for p, g in zip(params, gradients(np.float32, 2)):
        p.grad = g
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][0]["weight_decay"] == 0.05 and sd["param_groups"][1]["lr"] == 0.003
    assert sorted(sd["state"]) == [0, 1], "parameter 2 had no gradient, so no state"
    buffer = sd["state"][0]["momentum_buffer"]
    assert isinstance(buffer, np.ndarray) and buffer.shape == SHAPES[0]
    buffer[...] = 99.0
    assert not np.any(opt.state[id(params[0])]["momentum_buffer"] == 99.0), "state_dict must copy"


def test_load_state_dict_mismatches():
    params = [nn.Parameter(v) for v in make_params(np.float32)]
    opt = optim.AdamW(params, lr=0.1)
    for p, g in zip(params, gradients(np.float32, 0)):
        p.grad = g
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="checkpoint has 1 parameter groups, this optimizer has 2"):
        optim.AdamW(groups_of([nn.Parameter(v) for v in make_params(np.float32)], True)).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 3 parameters"):
        optim.AdamW([nn.Parameter(np.ones(2))]).load_state_dict(sd)
    swapped = [nn.Parameter(v) for v in make_params(np.float32)[::-1]]
    with pytest.raises(ValueError, match="'exp_avg' of parameter 0 has shape \\(3, 4\\), expected \\(1, 2, 3, 3\\)"):
        optim.AdamW(swapped).load_state_dict(sd)


def test_parameters_without_gradient_are_untouched():
    params = [nn.Parameter(v) for v in make_params(np.float64)]
    before = params[1].data.copy()
    params[0].grad = np.ones(SHAPES[0])
    optim.AdamW(params, lr=0.1, weight_decay=0.5).step()
    np.testing.assert_array_equal(params[1].data, before)


def test_zero_grad():
    params = [nn.Parameter(v) for v in make_params(np.float32)]
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    optim.SGD(params, lr=0.1).zero_grad()
    assert all(p.grad is None for p in params)


def test_constructor_errors():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="amsgrad must be True or False"):
        optim.Adam([p], amsgrad="yes")
    with pytest.raises(ValueError, match="already in another group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(TypeError, match="requires_grad"):
        optim.SGD([mm.Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW([p], betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="alpha"):
        optim.RMSprop([p], alpha=1.5)


@pytest.mark.parametrize("config", ["SGD nesterov weight_decay", "Adam all", "AdamW", "RMSprop all"])
def test_updates_are_in_place_and_allocation_free(config):
    """After the first step (state creation), a step allocates no parameter-sized temporaries."""
    cls_name = config.split()[0]
    p = nn.Parameter(np.ones((256, 256), np.float32))  # 256 KiB
    p.grad = np.full(p.shape, 0.5, np.float32)
    opt = getattr(optim, cls_name)([p], **CONFIGS[config])
    array = p.data
    opt.step()
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert p.data is array, "the update must write into p.data"
    assert peak < p.data.nbytes // 4, f"a step allocated {peak} bytes for a {p.data.nbytes}-byte parameter"


def test_weight_decay_groups():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    decay, no_decay = optim.weight_decay_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [(3, 4), (2, 3)]
    assert [p.shape for p in no_decay["params"]] == [(3,), (2,)]
    opt = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


# -- schedules -------------------------------------------------------------------------


def two_group_optimizer():
    params = [nn.Parameter(v) for v in make_params(np.float32)]
    return optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], lr=0.1)


def torch_twin():
    params = [torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)]
    return torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], lr=0.1)


def trajectory(scheduler, optimizer, steps):
    lrs = [scheduler.get_last_lr()]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return np.array(lrs)


def test_warmup_cosine_formula():
    opt = two_group_optimizer()
    sched = lr_scheduler.WarmupCosineLR(opt, warmup_steps=5, total_steps=20, min_lr=0.01)
    lrs = trajectory(sched, opt, 25)
    for t, row in enumerate(lrs):
        for peak, lr in zip([0.1, 0.5], row):
            if t < 5:
                expected = peak * (t + 1) / 5
            else:
                expected = 0.01 + (peak - 0.01) * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - 5) / 15)))
            assert lr == pytest.approx(expected, rel=1e-12), f"step {t}"
    assert lrs[4].tolist() == pytest.approx([0.1, 0.5]) and lrs[-1].tolist() == pytest.approx([0.01, 0.01])


def test_warmup_cosine_matches_torch_linear_then_cosine():
    """Warmup = LinearLR from 1/warmup to 1 over warmup-1 steps; then CosineAnnealingLR."""
    warmup, total = 4, 12
    opt = two_group_optimizer()
    ours = trajectory(lr_scheduler.WarmupCosineLR(opt, warmup, total), opt, total - 1)
    topt = torch_twin()
    torch_sched = torch.optim.lr_scheduler.SequentialLR(
        topt,
        [torch.optim.lr_scheduler.LinearLR(topt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
         torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=total - warmup)],
        milestones=[warmup],
    )
    np.testing.assert_allclose(ours, trajectory(torch_sched, topt, total - 1), rtol=1e-9, atol=1e-12)


def test_step_lr_matches_torch():
    opt, topt = two_group_optimizer(), torch_twin()
    ours = trajectory(lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), opt, 10)
    theirs = trajectory(torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5), topt, 10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_lambda_lr_matches_torch():
    fn = lambda t: 1.0 / (1 + t) ** 0.5  # noqa: E731
    opt, topt = two_group_optimizer(), torch_twin()
    ours = trajectory(lr_scheduler.LambdaLR(opt, fn), opt, 8)
    theirs = trajectory(torch.optim.lr_scheduler.LambdaLR(topt, fn), topt, 8)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_construction_applies_step_zero_and_records_initial_lr():
    opt = two_group_optimizer()
    lr_scheduler.WarmupCosineLR(opt, warmup_steps=10, total_steps=100)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.05])
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert all("initial_lr" in g for g in opt.state_dict()["param_groups"])


@pytest.mark.parametrize(
    "make",
    [lambda o: lr_scheduler.WarmupCosineLR(o, 3, 20, min_lr=1e-4), lambda o: lr_scheduler.StepLR(o, 4, 0.3),
     lambda o: lr_scheduler.LambdaLR(o, lambda t: 0.9**t), lambda o: lr_scheduler.CosineAnnealingLR(o, 9, 0.01),
     lambda o: lr_scheduler.OneCycleLR(o, max_lr=[0.3, 0.6], total_steps=14, three_phase=True)],
    ids=["WarmupCosineLR", "StepLR", "LambdaLR", "CosineAnnealingLR", "OneCycleLR"],
)
def test_scheduler_resume(make):
    """Optimizer + scheduler saved mid-run and restored into fresh objects continue the same schedule."""
    opt = two_group_optimizer()
    sched = make(opt)
    trajectory(sched, opt, 7)
    saved_opt, saved_sched = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    json.dumps(saved_sched)
    expected = trajectory(sched, opt, 6)

    opt2 = two_group_optimizer()
    sched2 = make(opt2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    np.testing.assert_array_equal(trajectory(sched2, opt2, 6), expected)


def test_scheduler_errors():
    opt = two_group_optimizer()
    with pytest.raises(ValueError, match="warmup_steps < total_steps"):
        lr_scheduler.WarmupCosineLR(opt, warmup_steps=10, total_steps=10)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match="callable"):
        lr_scheduler.LambdaLR(opt, 0.5)


# -- issue 14, item 11: numeric hyperparameters are checked ------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=float("nan")), "SGD: lr must be a finite number >= 0, got nan"),
    (lambda p: optim.SGD(p, lr=float("inf")), "SGD: lr must be a finite number >= 0, got inf"),
    (lambda p: optim.SGD(p, lr=-1.0), "SGD: lr must be a finite number >= 0, got -1.0"),
    (lambda p: optim.SGD(p, lr="0.1"), "SGD: lr must be a finite number >= 0, got '0.1'"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=float("nan")), "SGD: momentum must be a finite number >= 0"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=float("inf")), "SGD: weight_decay must be a finite number >= 0"),
    (lambda p: optim.SGD(p, lr=0.1, dampening=float("nan")), "SGD: dampening must be a finite number"),
    (lambda p: optim.AdamW(p, lr=float("nan")), "AdamW: lr must be a finite number >= 0"),
    (lambda p: optim.AdamW(p, eps=float("inf")), "AdamW: eps must be a finite number >= 0"),
    (lambda p: optim.AdamW(p, betas=(float("nan"), 0.9)), "AdamW: betas\\[0\\] must be a finite number in \\[0, 1\\)"),
    (lambda p: optim.AdamW(p, betas=(0.9,)), "AdamW: betas must be a pair"),
    (lambda p: optim.RMSprop(p, alpha=float("nan")), "RMSprop: alpha must be a finite number in \\[0, 1\\]"),
    (lambda p: optim.RMSprop(p, momentum=float("inf")), "RMSprop: momentum must be a finite number >= 0"),
    (lambda p: optim.SGD([{"params": p[:1]}, {"params": p[1:], "lr": float("nan")}], lr=0.1),
     "SGD \\(parameter group 1\\): lr must be a finite number >= 0, got nan"),
])
def test_non_finite_or_out_of_range_hyperparameters_are_refused(make, message):
    params = [nn.Parameter(v) for v in make_params(np.float32)]
    with pytest.raises(ValueError, match=message):
        make(params)


def test_schedules_refuse_non_finite_settings():
    opt = two_group_optimizer()
    with pytest.raises(ValueError, match="WarmupCosineLR: min_lr must be a finite number >= 0, got nan"):
        lr_scheduler.WarmupCosineLR(opt, 2, 10, min_lr=float("nan"))
    with pytest.raises(ValueError, match="StepLR: gamma must be a finite number >= 0, got inf"):
        lr_scheduler.StepLR(opt, 2, gamma=float("inf"))


def test_load_state_dict_refuses_wrong_dtypes_non_finite_state_and_hyperparameters():
    """Item 9: a momentum buffer of int64 (or NaN) is a damaged checkpoint, not something to cast."""
    params = [nn.Parameter(v) for v in make_params(np.float32)]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    take_steps(params, opt, range(1))
    good = opt.state_dict()
    for field, value, message in [
        ("dtype", np.ones(SHAPES[0], np.int64),
         "state 'momentum_buffer' of parameter 0 has dtype int64, expected float32"),
        ("nan", np.full(SHAPES[0], np.nan, np.float32), "state 'momentum_buffer' of parameter 0 holds NaN or inf"),
    ]:
        sd = copy.deepcopy(good)
        sd["state"][0]["momentum_buffer"] = value
        fresh = optim.SGD([nn.Parameter(v) for v in make_params(np.float32)], lr=0.1, momentum=0.9)
        with pytest.raises(ValueError, match=message):
            fresh.load_state_dict(sd)
        assert fresh.state == {}, field  # nothing was loaded
    sd = copy.deepcopy(good)
    sd["param_groups"][0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="SGD.load_state_dict \\(parameter group 0\\): lr must be a finite number"):
        optim.SGD([nn.Parameter(v) for v in make_params(np.float32)], lr=0.1, momentum=0.9).load_state_dict(sd)


def test_scheduler_load_state_dict_takes_only_its_own_entries():
    opt = two_group_optimizer()
    sched = lr_scheduler.WarmupCosineLR(opt, 2, 10)
    saved = sched.state_dict()
    with pytest.raises(ValueError, match="missing \\['total_steps'\\], unknown \\['optimizer'\\]"):
        sched.load_state_dict({**{k: v for k, v in saved.items() if k != "total_steps"}, "optimizer": None})
    with pytest.raises(ValueError, match="base_lrs\\[1\\] must be a finite number >= 0, got nan"):
        sched.load_state_dict({**saved, "base_lrs": [0.1, float("nan")]})
    with pytest.raises(ValueError, match="one rate per parameter group \\(2\\)"):
        sched.load_state_dict({**saved, "base_lrs": [0.1]})
    assert sched.optimizer is opt


# -- issue 16: Adam, CosineAnnealingLR, OneCycleLR --------------------------------------------------


def momenta(optimizer):
    """Each group's momentum, or beta1 for Adam-style optimizers."""
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in optimizer.param_groups]


def schedule_trace(scheduler, optimizer, steps):
    """(lr per group, momentum per group) after construction and after each of ``steps`` steps."""
    rows = [scheduler.get_last_lr() + momenta(optimizer)]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        rows.append(scheduler.get_last_lr() + momenta(optimizer))
    return np.array(rows)


def test_cosine_annealing_matches_torch_past_t_max():
    """Two groups, eta_min > 0, and 2.5 periods: past T_max the cosine climbs back, as in torch."""
    opt, topt = two_group_optimizer(), torch_twin()
    ours = trajectory(lr_scheduler.CosineAnnealingLR(opt, T_max=6, eta_min=0.01), opt, 15)
    theirs = trajectory(torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=6, eta_min=0.01), topt, 15)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert ours[6].tolist() == pytest.approx([0.01, 0.01]) and ours[12].tolist() == pytest.approx([0.1, 0.5])


ONE_CYCLE = {
    "defaults": dict(max_lr=0.4, total_steps=20),
    "per-group max_lr, linear": dict(max_lr=[0.4, 1.0], total_steps=13, anneal_strategy="linear", pct_start=0.25),
    "three_phase": dict(max_lr=0.4, total_steps=17, three_phase=True, div_factor=10.0, final_div_factor=100.0),
    "epochs x steps_per_epoch": dict(max_lr=0.3, epochs=3, steps_per_epoch=5, base_momentum=0.8,
                                     max_momentum=[0.9, 0.99]),
    "no momentum cycling": dict(max_lr=0.4, total_steps=10, cycle_momentum=False),
}


@pytest.mark.parametrize("cls_name", ["SGD", "Adam"])
@pytest.mark.parametrize("config", list(ONE_CYCLE))
def test_one_cycle_lr_and_momentum_match_torch(config, cls_name):
    """Rates and momenta (SGD's momentum, Adam's beta1) step by step, over the whole schedule."""
    kwargs = ONE_CYCLE[config]
    extra = {"momentum": 0.9} if cls_name == "SGD" else {}
    params = [nn.Parameter(v) for v in make_params(np.float64)]
    opt = getattr(optim, cls_name)([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], lr=0.1, **extra)
    tparams = [torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)]
    topt = getattr(torch.optim, cls_name)([{"params": tparams[:1]}, {"params": tparams[1:], "lr": 0.5}], lr=0.1,
                                          **extra)
    sched = lr_scheduler.OneCycleLR(opt, **kwargs)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, **kwargs)
    steps = kwargs.get("total_steps") or kwargs["epochs"] * kwargs["steps_per_epoch"]
    ours, theirs = schedule_trace(sched, opt, steps - 1), schedule_trace(tsched, topt, steps - 1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    for key in ("initial_lr", "max_lr", "min_lr"):
        assert [g[key] for g in opt.param_groups] == pytest.approx([g[key] for g in topt.param_groups]), key


@pytest.mark.parametrize("cls_name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                                              ("SGD", dict(lr=0.1)),  # torch switches momentum on
                                              ("Adam", dict(lr=0.01, weight_decay=0.1)),
                                              ("AdamW", dict(lr=0.01, amsgrad=True))],
                         ids=["SGD momentum", "SGD plain", "Adam", "AdamW amsgrad"])
def test_training_with_one_cycle_matches_torch(cls_name, kwargs):
    """The parameters themselves after 8 steps of optimizer + OneCycleLR, float64, tight."""
    results = []
    for library in ("minimix", "torch"):
        values = make_params(np.float64)
        if library == "minimix":
            params = [nn.Parameter(v.copy()) for v in values]
            opt = getattr(optim, cls_name)(groups_of(params, True), **kwargs)
            sched = lr_scheduler.OneCycleLR(opt, max_lr=[0.05, 0.2], total_steps=8, pct_start=0.4)
        else:
            params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
            opt = getattr(torch.optim, cls_name)(groups_of(params, True), **kwargs)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.05, 0.2], total_steps=8, pct_start=0.4)
        for step in range(8):
            for p, g in zip(params, gradients(np.float64, step)):
                p.grad = None if g is None else (g.copy() if library == "minimix" else torch.from_numpy(g.copy()))
            opt.step()
            if step < 7:
                sched.step()
        results.append([p.data if library == "minimix" else p.detach().numpy() for p in params])
    for i, (a, b) in enumerate(zip(*results)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"parameter {i}")


def test_one_cycle_resumes_from_state_dicts():
    """Optimizer + OneCycleLR saved after 3 steps and loaded into fresh ones: the same rates, momenta
    and parameters as the uninterrupted run (the rates live in the optimizer's groups, as in torch)."""
    def make(values):
        params = [nn.Parameter(v.copy()) for v in values]
        opt = optim.Adam(groups_of(params, True), lr=0.01, weight_decay=0.01)
        return params, opt, lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)

    def steps(params, opt, sched, which):
        rows = []
        for step in which:
            for p, g in zip(params, gradients(np.float64, step)):
                p.grad = g
            opt.step()
            sched.step()
            rows.append(sched.get_last_lr() + momenta(opt))
        return rows

    params, opt, sched = make(make_params(np.float64))
    steps(params, opt, sched, range(3))
    saved = copy.deepcopy((opt.state_dict(), sched.state_dict(), [p.data.copy() for p in params]))
    json.dumps(saved[1])
    expected = steps(params, opt, sched, range(3, 9))

    params2, opt2, sched2 = make(saved[2])
    opt2.load_state_dict(saved[0])
    sched2.load_state_dict(saved[1])
    assert steps(params2, opt2, sched2, range(3, 9)) == expected
    for a, b in zip(params2, params):
        np.testing.assert_array_equal(a.data, b.data)


def test_one_cycle_errors():
    opt = two_group_optimizer()
    with pytest.raises(ValueError, match="give total_steps, or epochs and steps_per_epoch"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="total_steps must be a positive int, got 0"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=0)
    with pytest.raises(ValueError, match="max_lr must be one number or one per parameter group \\(2\\), got 3"):
        lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 0.2, 0.3], total_steps=5)
    with pytest.raises(ValueError, match="anneal_strategy must be 'cos' or 'linear'"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5, anneal_strategy="exp")
    with pytest.raises(ValueError, match="pct_start must be a finite number in \\[0, 1\\]"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5, pct_start=1.5)

    class Plain(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

        def update(self, p, grad, state, group):
            p.data -= group["lr"] * grad

    plain = Plain([nn.Parameter(np.ones(2))])
    with pytest.raises(ValueError, match="cycle_momentum=True needs an optimizer with momentum or betas"):
        lr_scheduler.OneCycleLR(plain, max_lr=0.1, total_steps=5)
    sched = lr_scheduler.OneCycleLR(plain, max_lr=0.1, total_steps=3, cycle_momentum=False)
    tplain = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    tsched = torch.optim.lr_scheduler.OneCycleLR(tplain, max_lr=0.1, total_steps=3, cycle_momentum=False)
    for _ in range(3):
        plain.step(), tplain.step()  # optimizer first: torch warns otherwise
        sched.step()
        tsched.step()
    with pytest.raises(ValueError, match="tried to step 4 times; the specified number of total steps is 3"):
        sched.step()
    with pytest.raises(ValueError, match="(?i)tried to step 4 times"):
        tsched.step()


def test_cosine_annealing_errors():
    opt = two_group_optimizer()
    with pytest.raises(ValueError, match="T_max must be a positive int, got 0"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="eta_min must be a finite number >= 0, got nan"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=5, eta_min=float("nan"))
