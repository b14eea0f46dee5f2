"""The kernel-size study (minimix.study.kernels, ``python -m minimix study kernels``): the variant table
and the models it builds, a tiny end-to-end study (2 variants x 2 seeds, 1 epoch, width 0.25, a synthetic
dataset of 48 training images), skipping finished runs, continuing an interrupted one bit for bit, the
results table, figures and page, ``--collect-only``, and the sentences that compare variants."""
import csv
import json

import numpy as np
import pytest
from conftest import require

import minimix as mm
from minimix import nn
from minimix.cli import main
from minimix.data import DataLoader
from minimix.models import mixnet_cifar
from minimix.nn.mixconv import DilatedMixConv2d
from minimix.study import kernels
from minimix.study.kernels import VARIANTS
from minimix.training import load_weights, read_checkpoint
from minimix.training.recipe import build_model

require("matplotlib", "the study draws its figures with matplotlib")


def _model(name, width=0.25):
    kwargs = VARIANTS[name].model_kwargs(width)
    return mixnet_cifar(**kwargs)


def _depthwise(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MixConv2d)]


def test_variant_names_are_the_issue_s():
    assert list(VARIANTS) == ["k3", "k5", "k7", "k9", "k11", "mix35", "mix357", "mix3579", "mix3579-exp",
                              "mix3579-dilated"]
    assert json.loads(json.dumps(VARIANTS["mix3579-exp"].model_kwargs(0.5))) == {
        "width_multiplier": 0.5, "kernel_sizes": [3, 5, 7, 9], "split": "exponential", "dilated": False}


@pytest.mark.parametrize("name, k", [("k3", 3), ("k7", 7), ("k11", 11)])
def test_single_size_variants_have_only_k_by_k_depthwise_kernels(name, k):
    model = _model(name)
    layers = _depthwise(model)
    assert len(layers) == 16  # every block's depthwise conv
    assert {tuple(conv.weight.shape[1:]) for _, m in layers for conv in m.convs} == {(1, k, k)}
    assert model.conv_stem.weight.shape[2:] == (3, 3)  # the stem stays a plain 3x3 conv


def test_mix_variants_split_equally_and_exponentially():
    for _, m in _depthwise(_model("mix357")):
        assert m.kernel_sizes == (3, 5, 7) and max(m.splits) - min(m.splits) <= m.channels % 3
    exp = dict(_depthwise(_model("mix3579-exp", width=0.5)))
    # blocks.4.1: 120 * 0.5 = 64 (rounded to 8) input channels x expansion 3 = 192 channels
    assert exp["blocks.4.1.conv_dw"].channels == 192
    assert exp["blocks.4.1.conv_dw"].splits == [96, 48, 24, 24]
    assert dict(_depthwise(_model("mix3579", width=0.5)))["blocks.4.1.conv_dw"].splits == [48, 48, 48, 48]


def test_dilated_variant_has_3x3_kernels_at_dilations_1_to_4_in_stride_1_blocks():
    layers = _depthwise(_model("mix3579-dilated"))
    dilated = [m for _, m in layers if isinstance(m, DilatedMixConv2d)]
    plain = [m for _, m in layers if not isinstance(m, DilatedMixConv2d)]
    assert len(dilated) == 13 and all(m.stride == 1 for m in dilated)
    for m in dilated:
        assert [tuple(c.weight.shape[2:]) for c in m.convs] == [(3, 3)] * 4
        assert [c.dilation for c in m.convs] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    # mixnet_cifar keeps 3 stride-2 blocks: their kernels stay 3, 5, 7, 9
    assert len(plain) == 3 and all(m.stride == 2 and m.kernel_sizes == (3, 5, 7, 9) for m in plain)


def test_study_config_is_the_train_command_s_recipe():
    config = kernels.study_config(VARIANTS["k5"], seed=1, epochs=10, width=0.25, limit=20000)
    assert (config.model, config.epochs, config.seed, config.limit, config.test_limit) == ("mixnet_cifar", 10, 1,
                                                                                            20000, 4000)
    # recipe_config's small-run rule: 20,000 images keep batch 256; a 78-step warmup halves the peak lr
    assert config.batch_size == 256 and config.lr == pytest.approx(0.1)
    assert config.model_kwargs == {"width_multiplier": 0.25, "kernel_sizes": [5], "split": "equal",
                                   "dilated": False, "init": "pytorch"}
    with pytest.raises(ValueError, match="unknown variants \\['k4'\\]"):
        kernels.run_study(variants=["k4"], dataset=((),) * 4)


# -- a tiny study --------------------------------------------------------------------------------------

def _images(count, seed):
    """A learnable synthetic CIFAR-like set: class = a brightened colour channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 120, (count, 32, 32, 3))
    for i, label in enumerate(labels):
        images[i, :, :, label % 3] += 40 * (1 + label // 3)
    return images.astype(np.uint8), labels.astype(np.int64)


DATASET = (*_images(48, 0), *_images(20, 1))
# --limit 48: the recipe's small-run batch 16, 3 steps per epoch; the test set's same fraction (10 images)
TINY = dict(epochs=1, width=0.25, limit=48, dataset=DATASET, erf_images=2, checkpoint_every=None, batch_size=None)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    lines = []
    rows = kernels.run_study(out=root / "runs", results=root / "results", variants=["k3", "mix35"], seeds=[0, 1],
                             log=lines.append, **TINY)
    return root, rows, lines


def test_tiny_study_trains_every_run_and_collects(study):
    root, rows, lines = study
    assert [line.split(":")[0] for line in lines if line.startswith("[")][::2] == [
        "[1/4] k3 seed 0", "[2/4] k3 seed 1", "[3/4] mix35 seed 0", "[4/4] mix35 seed 1"]
    assert sum("starting in" in line for line in lines) == 4 and sum("ETA" in line for line in lines) == 4
    # the results are rewritten after every run (1, 2, 3, 4 runs recorded), then once more at the end
    assert [int(line.split()[1]) for line in lines if line.startswith("collected")] == [1, 2, 3, 4, 4]
    for name in ("k3", "mix35"):
        for seed in (0, 1):
            assert kernels.run_state(root / "runs" / name / f"seed{seed}") == ("done", 1, 0)
    with open(root / "results" / "kernel-study.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["variant"] for row in table] == ["k3", "mix35"]
    assert list(table[0]) == ["variant", "kernel_sizes", "split", "dilated", "params", "macs", "epochs", "width",
                              "limit", "seeds", "test_images", "acc_seed0", "acc_seed1", "mean", "min", "max", "spread", "std",
                              "train_seconds_per_epoch", "wall_seconds_per_epoch", "machine_seconds", "rf", "erf50",
                              "erf90", "cpu", "commit"]
    k3 = table[0]
    accs = [float(k3["acc_seed0"]), float(k3["acc_seed1"])]
    assert float(k3["mean"]) == pytest.approx(np.mean(accs), abs=1e-4)
    assert float(k3["spread"]) == pytest.approx(max(accs) - min(accs), abs=1e-4)
    # the accuracy is the final weights' on the WHOLE test set (20 images here), not the last epoch's on its
    # 10-image subset: recomputed here with the unfused model in eval mode, outside the study's code
    assert k3["test_images"] == "20"
    model = build_model("mixnet_cifar", VARIANTS["k3"].model_kwargs(0.25))
    _, state, _ = read_checkpoint(root / "runs" / "k3" / "seed1")
    load_weights(model, state["model"])
    model.eval()
    images, labels = next(iter(DataLoader(DATASET[2], DATASET[3], batch_size=20, shuffle=False)))
    with mm.no_grad():
        expected = float((model(mm.Tensor(images)).data.argmax(axis=1) == labels).mean())
    assert float(k3["acc_seed1"]) == pytest.approx(expected, abs=1e-4)
    final = json.loads((root / "runs" / "k3" / "seed1" / "final-test.json").read_text())
    assert (final["images"], final["epoch"]) == (20, 1) and final["test_acc"] == pytest.approx(expected)
    assert (int(k3["params"]), int(k3["macs"])) == (228_266, 8_518_016)  # summary() of mixnet_cifar w0.25 k3
    assert int(table[1]["rf"]) > int(k3["rf"]) > 32 and float(k3["erf50"]) > 0
    assert k3["commit"] and "cores" in k3["cpu"]
    # machine time: every epoch of both seeds with its test and checkpoint, and each final test, read here from
    # the run directories' metrics.csv and final-test.json rather than from the records collect reads
    spent = 0.0
    for seed in (0, 1):
        run_dir = root / "runs" / "k3" / f"seed{seed}"
        with open(run_dir / "metrics.csv", newline="") as handle:
            spent += sum(float(r["seconds"]) + float(r["eval_seconds"]) + float(r["checkpoint_seconds"])
                         for r in csv.DictReader(handle))
        spent += json.loads((run_dir / "final-test.json").read_text())["seconds"]
    assert float(k3["machine_seconds"]) == pytest.approx(spent, abs=1.0) and spent > 0
    with open(root / "results" / "kernel-study-runs.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert [(r["variant"], r["seed"]) for r in runs] == [("k3", "0"), ("k3", "1"), ("mix35", "0"), ("mix35", "1")]
    assert json.loads(runs[3]["recipe"])["model_kwargs"]["kernel_sizes"] == [3, 5]


def test_figures_and_page(study):
    root, rows, _ = study
    summary = (root / "results" / "kernel-study-summary.md").read_text()
    assert summary.startswith("| variant | kernels | M MACs |") and "| k3 | 3 | 8.5 |" in summary
    plt = pytest.importorskip("matplotlib.pyplot")
    for name in kernels.FIGURES:
        image = plt.imread(root / "results" / name)
        assert image.shape[0] > 300 and image.std() > 0.05, name  # a drawn figure, not a blank canvas
    page = (root / "results" / "kernel-study.md").read_text()
    assert "| k3 | 3 | equal | False | 228,266 |" in page and "| mix35 | 3.5 |" in page
    assert "## Why this budget" in page and "mix35 vs k5: no finished runs of k5 yet." in page
    assert "Machine time: " in page and " h for the 4 runs" in page


def test_a_second_invocation_skips_finished_runs(study):
    root, _, _ = study
    before = (root / "runs" / "k3" / "seed0" / "last.json").stat().st_mtime_ns
    lines = []
    kernels.run_study(out=root / "runs", results=None, variants=["k3", "mix35"], seeds=[0, 1], log=lines.append,
                      **TINY)
    assert sum("finished, skipped" in line for line in lines) == 4 and "0 to train" in lines[0]
    assert (root / "runs" / "k3" / "seed0" / "last.json").stat().st_mtime_ns == before


def test_collect_only_rewrites_the_results_without_training(study, capsys):
    root, _, _ = study
    results = root / "collected"
    assert main(["study", "kernels", "--collect-only", "--out", str(root / "runs"), "--results", str(results),
                 "--erf-images", "0"]) == 0
    assert "collected 4 finished runs of 2 variants" in capsys.readouterr().out
    rows = kernels.read_results(results / "kernel-study.csv")
    assert [r["variant"] for r in rows] == ["k3", "mix35"] and all(len(r["accs"]) == 2 for r in rows)
    assert rows[0]["erf50"] == ""  # --erf-images 0: the theoretical field only
    assert all((results / name).is_file() for name in kernels.FIGURES)


def test_a_run_of_another_recipe_is_refused(study):
    root, _, _ = study
    with pytest.raises(ValueError, match="holds a run of another recipe.*epochs: run has 1, now 2"):
        kernels.run_study(out=root / "runs", results=None, variants=["k3"], seeds=[0],
                          **{**TINY, "epochs": 2})


class Interrupt(Exception):
    pass


def test_killed_study_resumes_where_it_stopped_bit_for_bit(tmp_path):
    """Interrupt the first run after its 2nd step (a checkpoint after every step, as a kill between
    checkpoints loses only the steps since the last one); the same call again resumes it (not restarts)
    and ends with the weights of a run that was never interrupted."""
    def stop(epoch, step, loss):
        if step == 1:
            raise Interrupt

    options = dict(TINY, variants=["mix35"], seeds=[0], results=None, checkpoint_every=0.0)
    with pytest.raises(Interrupt):
        kernels.run_study(out=tmp_path / "a", on_step=stop, **options)
    assert kernels.run_state(tmp_path / "a" / "mix35" / "seed0") == ("partial", 0, 2)
    lines = []
    kernels.run_study(out=tmp_path / "a", log=lines.append, **options)
    assert any("mix35 seed 0: resuming after epoch 0, step 2" in line for line in lines)
    sessions = json.loads((tmp_path / "a" / "mix35" / "seed0" / "study.json").read_text())["sessions"]
    assert len(sessions) == 2

    kernels.run_study(out=tmp_path / "b", log=lambda line: None, **options)
    resumed, straight = (read_checkpoint(tmp_path / d / "mix35" / "seed0")[1] for d in ("a", "b"))
    assert resumed["history"][0]["train_loss"] == straight["history"][0]["train_loss"]
    resumed, straight = resumed["model"], straight["model"]
    assert len(straight) > 100 and set(resumed) == set(straight)
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


# -- comparing variants --------------------------------------------------------------------------------

def _row(name, accs, macs=10_000_000):
    return {"variant": name, "accs": accs, "mean": float(np.mean(accs)), "min": min(accs), "max": max(accs),
            "macs": macs}


def test_compare_says_separated_only_when_every_seed_is_higher():
    rows = [_row("k3", [0.70, 0.72]), _row("k5", [0.73, 0.75]), _row("k7", [0.715, 0.76]), _row("k9", [0.74])]
    assert kernels.compare(rows, "k5", "k3") == ("k5 74.0% (seeds 73.0%-75.0%) vs k3 71.0% (seeds 70.0%-72.0%): "
                                                 "+3.0 points; k5 is higher in every seed (beyond the seed spread; "
                                                 "with 2 and 2 seeds and no real difference this happens by chance "
                                                 "1 time in 3).")
    assert "k5 is higher in every seed (beyond the seed spread;" in kernels.compare(rows, "k3", "k5")
    assert "the seeds' ranges overlap, so the difference is within the seed spread" in kernels.compare(rows, "k7", "k3")
    assert kernels.compare(rows, "k9", "k5").endswith("from a single seed: no spread to judge it by.")
    assert kernels.compare(rows, "mix35", "k5") == "mix35 vs k5: no finished runs of mix35 yet."


def test_chance_of_separation_counts_the_orders_of_the_seeds():
    # 2 vs 2: of the 6 ways to choose which 2 of 4 ranked accuracies are A's, AABB and BBAA separate
    assert kernels.chance_of_separation(2, 2) == pytest.approx(2 / 6)
    assert kernels.chance_of_separation(3, 3) == pytest.approx(2 / 20)
    assert kernels.chance_of_separation(3, 2) == pytest.approx(2 / 10)
    assert kernels.chance_of_separation(1, 1) == 1.0  # one seed each: always "separated", so no evidence
    rng = np.random.default_rng(0)  # and by simulation: two variants with no difference, 3 seeds each
    draws = rng.standard_normal((20000, 6))
    separated = np.mean([kernels.separation(list(d[:3]), list(d[3:])) != 0 for d in draws])
    assert separated == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="at least one seed on each side"):
        kernels.chance_of_separation(0, 2)


def test_summary_markdown_lists_the_variants_and_ranks_them():
    rows = [dict(_row("k3", [0.70, 0.72], 8.5e6), kernel_sizes="3", split="equal", dilated="False"),
            dict(_row("k5", [0.73, 0.75], 10.0e6), kernel_sizes="5", split="equal", dilated="False"),
            dict(_row("mix3579-exp", [0.715, 0.76], 12.0e6), kernel_sizes="3.5.7.9", split="exponential",
                 dilated="False")]
    text = kernels.summary_markdown(rows)
    assert "| k5 | 5 | 10.0 | 74.00% (73.00%, 75.00%) |" in text
    assert "| mix3579-exp | 3.5.7.9 exp. split | 12.0 | 73.75% (71.50%, 76.00%) |" in text
    # k5 and mix3579-exp overlap; mix3579-exp (71.5-76.0) and k3 (70-72) overlap too
    assert text.endswith("By mean: k5 ~ mix3579-exp ~ k3 (>: higher in every seed, ~: the seeds overlap).")
    assert kernels.summary_markdown([]) == "No run of the study has finished yet."


def test_claims_name_the_best_single_size_and_each_comparison():
    rows = [_row("k3", [0.70, 0.71]), _row("k5", [0.74, 0.75]), _row("k7", [0.72, 0.73]),
            _row("mix3579", [0.74, 0.76], 15e6), _row("mix3579-dilated", [0.70, 0.75], 9e6)]
    found = dict(kernels.claims(rows))
    trend = found["Accuracy rises with the kernel size, then falls beyond about 9x9."]
    assert trend.startswith("Means: k3 70.5%, k5 74.5%, k7 72.5%. The best single size is k5.")
    assert "Rise: k5 74.5%" in trend and "Fall: k5 74.5%" in trend
    dilated = found["Dilated 3x3 kernels are worse than real large kernels of the same span."]
    assert "within the seed spread" in dilated and "9.0 M multiply-accumulates per image against 15.0 M" in dilated


def test_command_line_study_on_an_image_folder(tmp_path, monkeypatch, capsys):
    """``python -m minimix study kernels`` end to end on a CIFAR-10-style folder of PNGs (--data)."""
    image = require("PIL.Image", "Pillow writes the test dataset")
    from minimix.data import CLASSES

    monkeypatch.setenv("MINIMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIMIX_DATA", raising=False)
    for split, count, seed in (("train", 3, 0), ("test", 1, 1)):
        images, labels = _images(10 * count, seed)
        for i, (picture, label) in enumerate(zip(images, labels)):
            folder = tmp_path / "data" / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            image.fromarray(picture).save(folder / f"{i:03d}.png")
    argv = ["study", "kernels", "--data", str(tmp_path / "data"), "--variants", "k3", "--seeds", "0", "--epochs", "1",
            "--width", "0.25", "--limit", "30", "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--erf-images", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[1/1] k3 seed 0: starting in" in out and "collected 1 finished runs of 1 variants" in out
    rows = kernels.read_results(tmp_path / "res" / "kernel-study.csv")
    assert [(r["variant"], r["limit"], len(r["accs"])) for r in rows] == [("k3", "30", 1)]
    assert main(argv) == 0 and "[1/1] k3 seed 0: finished, skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "kernels", "--variants", "k4"])
    assert exit_info.value.code == 2 and "unknown variants ['k4']" in capsys.readouterr().err


def test_a_fresh_clone_continues_from_the_committed_records(study, tmp_path):
    """The records are what a fresh clone has of the finished runs (the run directories, with their
    checkpoints, stay on the machine that trained them): every recorded run is skipped, and the results
    collected from the records alone are the same as the ones collected beside the run directories."""
    import shutil

    root, _, _ = study
    shutil.copytree(root / "results" / kernels.RECORDS, tmp_path / "results" / kernels.RECORDS)
    lines = []
    rows = kernels.run_study(out=tmp_path / "runs", results=tmp_path / "results", variants=["k3", "mix35"],
                             seeds=[0, 1], log=lines.append, **TINY)
    assert "4 finished (4 with a record in" in lines[0] and "0 to train" in lines[0]
    assert sum("finished, skipped" in line and kernels.RECORDS in line for line in lines) == 4
    assert not (tmp_path / "runs").exists()  # nothing trained
    for name in ("kernel-study.csv", "kernel-study-runs.csv"):
        assert (tmp_path / "results" / name).read_text() == (root / "results" / name).read_text(), name
    assert [r["variant"] for r in rows] == ["k3", "mix35"]


def test_a_record_keeps_what_the_results_need(study):
    root, _, _ = study
    record = kernels.read_record(kernels.record_path(root / "results" / kernels.RECORDS, "k3", 1))
    _, state, config = read_checkpoint(root / "runs" / "k3" / "seed1")
    final = json.loads((root / "runs" / "k3" / "seed1" / "final-test.json").read_text())
    assert (record["variant"], record["seed"], record["final_test"]) == ("k3", 1, final)
    assert record["history"] == state["history"] and record["recipe"]["epochs"] == config.epochs == 1
    assert "data" not in record["recipe"] and record["recipe"]["model_kwargs"]["kernel_sizes"] == [3]
    assert record["fields"]["rf"] > 32 and record["fields"]["erf50"] > 0 and record["erf_images"] == 2
    assert record["sessions"][0]["commit"] and "cores" in record["sessions"][0]["cpu"]


def test_a_damaged_or_foreign_record_is_refused_by_name(study, tmp_path):
    root, _, _ = study
    records = tmp_path / "results" / kernels.RECORDS
    path = kernels.record_path(records, "k3", 0)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"seed0\.json: not a run record \(invalid JSON"):
        kernels.read_records(records)
    record = json.loads(kernels.record_path(root / "results" / kernels.RECORDS, "k3", 0).read_text())
    path.write_text(json.dumps({**record, "history": "none"}))
    with pytest.raises(ValueError, match=r"seed0\.json: the record's 'history' must be a list"):
        kernels.read_record(path)
    path.write_text(json.dumps({**record, "seed": 1}))
    with pytest.raises(ValueError, match=r"seed0\.json: holds the record of k3 seed 1, not of k3 seed 0"):
        kernels.read_records(records)
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"seed0\.json holds a run of another recipe.*epochs: run has 1, now 2"):
        kernels.run_study(out=tmp_path / "runs", results=tmp_path / "results", variants=["k3"], seeds=[0],
                          **{**TINY, "epochs": 2})


def test_committed_results_are_the_committed_records_collected(tmp_path):
    """docs/results holds exactly what ``--collect-only`` writes from the committed run records (no table
    edited by hand, none left behind by a newer record), and README "Results" shows the summary table."""
    from conftest import REPO

    committed = REPO / "docs" / "results"
    records = committed / kernels.RECORDS
    assert any(records.glob("*/seed*.json")), f"no run record in {records}: the study's results are committed with them"
    kernels.collect(out=tmp_path / "no-run-directories", results=tmp_path, records=records, log=lambda line: None)
    for name in ("kernel-study.csv", "kernel-study-runs.csv", "kernel-study.md", "kernel-study-summary.md"):
        assert (committed / name).read_text() == (tmp_path / name).read_text(), (
            f"docs/results/{name} is not what the committed records give: "
            "run `python -m minimix study kernels --collect-only` and commit its output")
    summary = (tmp_path / "kernel-study-summary.md").read_text().strip()
    assert summary in (REPO / "README.md").read_text(encoding="utf-8"), (
        "README's kernel-study table is not docs/results/kernel-study-summary.md: copy it into README \"Results\"")


def test_claims_say_when_no_larger_kernel_beats_the_smallest():
    rows = [_row("k3", [0.70, 0.72]), _row("k5", [0.65, 0.66]), _row("k7", [0.69, 0.71])]
    trend = dict(kernels.claims(rows))["Accuracy rises with the kernel size, then falls beyond about 9x9."]
    assert ("The best single size is k3. No rise at this budget: every larger single size has a lower mean than k3, "
            "and k5 is below it in every seed. Fall: k3 71.0%") in trend
    rows[1] = _row("k5", [0.705, 0.71])
    trend = dict(kernels.claims(rows))["Accuracy rises with the kernel size, then falls beyond about 9x9."]
    assert "lower mean than k3, none of them in every seed." in trend
