"""The benchmark scripts still run (tiny sizes, in a subprocess: they configure threads process-wide).
Timings are printed, never checked; what is checked is that each script runs to the end, and for
benchmarks/depthwise_layouts.py that its channels-last candidate agrees with the NCHW kernel (the
script asserts it on every shape)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_kernel_study_steps_times_the_chosen_variants():
    out = _run("kernel_study_steps.py", "--rounds", "2", "--batch", "4", "--variants", "k3,mix35")
    assert "seconds per training step, batch 4" in out
    assert [line.split()[0] for line in out.splitlines()[-3:]] == ["k3", "mix35", "sum"]


def test_kernel_study_steps_names_an_unknown_variant():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernel_study_steps.py"), "--variants", "k4"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 2 and "unknown variants ['k4']" in done.stderr


def test_depthwise_layouts_candidate_agrees_with_the_nchw_kernel():
    pytest.importorskip("torch")
    out = _run("depthwise_layouts.py", "--batch", "3", "--rounds", "1")
    rows = [line for line in out.splitlines() if re.match(r"\d+@\d+x\d+, k\d+, s\d", line)]
    assert len(rows) == 10 and all(row.rstrip().endswith("x") for row in rows)


def test_train_step_inference_only():
    out = _run("train_step.py", "--only", "infer", "--no-torch", "--no-reference", "--no-memory", "--steps", "1",
               "--warmup", "0", "--eval-batch", "4")
    assert "inference (eval mode, batch 4)" in out and "training step" not in out


def test_train_step_profile_by_shape():
    out = _run("train_step.py", "--profile", "--by-shape", "--only", "train", "--no-torch", "--no-reference",
               "--no-memory", "--steps", "1", "--warmup", "0", "--batch", "2")
    assert re.search(r"^BatchNormAct \(2, \d+, \d+, \d+\) +\d+ ", out, re.M)  # one row per op and input shape
    assert re.search(r"^conv 1x1 +[\d.]+ +[\d.]+ +[\d.]+%$", out, re.M)  # the layer types still add up


def test_norm_act_planes_times_every_shape_against_torch_and_each_activation():
    out = _run("norm_act_planes.py", "--batch", "2", "--rounds", "1")
    rows = [line for line in out.splitlines() if line.startswith("(")]
    assert len(rows) == 8 and all(line.rstrip().endswith("x") for line in rows)
    assert re.search(r"by activation \(ms\): none [\d.]+, relu [\d.]+, silu [\d.]+", out)


def test_polyphase_times_and_checks_both_loops():
    out = _run("polyphase.py", "--batches", "2", "--rounds", "1")
    rows = [line for line in out.splitlines() if line.startswith("2, (")]
    assert len(rows) == 6 and all(line.rstrip().endswith("x") for line in rows)  # split/merge, then the kernels
    assert "whole-layer canvas (split or merge by _phases_stride2) against per block" in out


def test_depthwise_blocks_times_every_setting():
    out = _run("depthwise_blocks.py", "--batches", "2", "--rounds", "1")
    rows = [line for line in out.splitlines() if line.startswith("2x")]
    assert len(rows) == 7 and all(line.count(" | ") == 4 for line in rows)


def test_small_planes_times_and_checks_both_ways():
    out = _run("small_planes.py", "--batch", "3", "--rounds", "1")
    depthwise = [line.split("|") for line in out.splitlines() if re.match(r" +[12] +\d+ +\d+ \| ", line)]
    # each kernel size: forward, input and weight gradient timed both ways (and agreeing: asserted)
    assert [row[0].split() for row in depthwise] == ([["1", "4", str(k)] for k in (3, 5, 7, 9)]
                                                     + [["1", "8", str(k)] for k in (7, 9)]
                                                     + [["2", "8", str(k)] for k in (3, 5, 7, 9, 11)])
    # without depthwise_dense / what minimix uses
    assert [row[-1].split() for row in depthwise] == ([["flat", "/", "flat"]] + [["flat", "/", "dense"]] * 3
                                                      + [["rows", "/", "rows"], ["rows", "/", "dense"]]
                                                      + [["rows", "/", "rows"]] + [["rows", "/", "dense"]] * 4)
    pointwise = [line.split() for line in out.splitlines() if re.match(r" *\d+->\d+ ", line)]
    assert [(row[1], row[-1]) for row in pointwise] == [("4x4", "gathered")] * 4 + [("8x8", "image")] * 5


def test_depthwise_rows_times_and_checks_both_paths():
    out = _run("depthwise_rows.py", "--batch", "2", "--rounds", "1")
    rows = [line for line in out.splitlines() if re.match(r" *[12] +\d+\^2 ", line)]
    # stride 1: 4 plane sizes x 4 kernel sizes; stride 2: 5 + 3 + 3 layers; each path agreeing with the other (asserted)
    assert [row.split()[0] for row in rows] == ["1"] * 16 + ["2"] * 11
    uses = [row.split()[-1] for row in rows]  # forward and input gradient / weight gradient
    # dense: k >= 5 onto 4x4 planes (stride 1 on 4x4, stride 2 from 8x8), k = 9 on 8x8; flat: 3x3 on 4x4 and 8x8
    assert [use.split("/")[0] for use in uses] == (["flat"] + ["dense"] * 3 + ["flat", "rows", "rows", "dense"]
                                                   + ["rows"] * 8  # stride 1
                                                   + ["rows"] + ["dense"] * 4 + ["rows"] * 6)  # stride 2
    # the weight gradient on rows: planes 16 wide or more, with k >= 5 at stride 1
    assert [use.split("/")[1] for use in uses] == (["flat"] + ["dense"] * 3 + ["flat"] * 3 + ["dense"]
                                                   + (["flat"] + ["rows"] * 3) * 2
                                                   + ["flat"] + ["dense"] * 4 + ["rows"] * 6)
