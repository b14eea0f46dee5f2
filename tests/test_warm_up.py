"""``minimix.training.warm_up``: the helper that compiles a first run's depthwise kernels in a second process.

What makes it worth having is measured, not tested (the closing note of the issue that added it has the
first step's time with and without it). Tested here: which layers it finds, that finding them changes
nothing, and that the helper compiles exactly the depthwise kernels a training step calls, with the same
signatures (a kernel compiled for other argument types would be no use to the training process).
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import require

from minimix.models import mixnet_cifar
from minimix.training import warm_up


def test_depthwise_layers_in_forward_order_without_side_effects():
    model = mixnet_cifar()
    before = {name: np.array(b) for name, b in model.named_buffers()}
    layers = warm_up.depthwise_layers(model, (3, 32, 32))
    # the first block's 3x3 depthwise conv on 32x32 planes, the last stage's MixConv on 4x4 planes
    assert layers[0] == [8, 32, 32, [3, 3], [1, 1], [1, 1], [1, 1]]
    assert layers[-1] == [156, 4, 4, [9, 9], [1, 1], [4, 4], [1, 1]]
    assert [76, 8, 8, [11, 11], [2, 2], [5, 5], [1, 1]] in layers  # stride 2, 11x11
    assert len(layers) == len({json.dumps(layer) for layer in layers})  # no repeats
    assert model.training  # the probe ran on a copy in eval mode
    for name, b in model.named_buffers():
        np.testing.assert_array_equal(np.array(b), before[name], err_msg=name)
    small = warm_up.depthwise_layers(mixnet_cifar(), (3, 16, 16))  # the planes follow the input
    assert small[0][:3] == [8, 16, 16]


def test_no_helper_without_layers():
    assert warm_up.start([]) is None
    warm_up.stop(None)  # nothing to stop


# Run in a fresh process, so that nothing is compiled beforehand: the helper's kernels first (with their
# signatures), then one training step of the same model; the depthwise kernels' signatures must not change.
_SAME_SIGNATURES = textwrap.dedent("""
    import sys
    import numpy as np
    import numba
    import minimix as mm
    from minimix.models import mixnet_cifar
    from minimix.optim import SGD
    from minimix.training import warm_up
    import minimix.nn.functional as F

    def depthwise_signatures():
        found = set()
        for name, module in list(sys.modules.items()):
            if name.startswith("minimix_generated_depthwise_rows") or name in (
                    "minimix.kernels.depthwise_numba", "minimix.kernels.depthwise_rows"):
                for attr, value in vars(module).items():
                    if isinstance(value, numba.core.registry.CPUDispatcher) and value.signatures:
                        found |= {(name.rsplit("_", 1)[0] if name.startswith("minimix_generated") else name,
                                   attr, str(sig)) for sig in value.signatures}
        return found

    mm.manual_seed(0)
    model = mixnet_cifar()
    warm_up.compile_layers(warm_up.depthwise_layers(model, (3, 32, 32)))
    helper = depthwise_signatures()
    x = mm.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32))
    loss = F.cross_entropy(model(x), mm.Tensor(np.array([1, 2])))
    loss.backward()
    SGD(model.parameters(), lr=0.1).step()
    step = depthwise_signatures()
    print(len(helper), len(step))
    assert helper, "the helper compiled no depthwise kernel"
    assert step == helper, ("the training step used other depthwise kernels or signatures than the "
                            f"helper compiled: only in the step {sorted(step - helper)}, only in "
                            f"the helper {sorted(helper - step)}")
""")


def test_helper_compiles_the_depthwise_kernels_a_training_step_calls():
    require("numba")
    done = subprocess.run([sys.executable, "-c", _SAME_SIGNATURES], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


def test_helper_process_runs_and_exits():
    require("numba")
    helper = warm_up.start([[4, 8, 8, [3, 3], [1, 1], [1, 1], [1, 1]]])
    if helper is None:
        pytest.skip("one core: no helper process is started")  # start's documented behaviour, not a gap
    assert helper.wait(timeout=900) == 0
    warm_up.stop(helper)
