"""Search runs: the run directory, exact resume after a kill, Ctrl-C, divergence, bad options."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cellnas.cli import main
from cellnas.errors import CellnasError, RunError
from cellnas.formats import load_genotype
from cellnas.search import loop as search_loop
from cellnas.search import search

TINY = dict(channels=4, layers=3, batch_size=32, epochs=2, steps_per_epoch=3, progress=False, plots=False)


def _final(run_dir):
    alphas = np.load(run_dir / "alphas.npz")
    metrics = [{k: v for k, v in m.items() if k != "time_s"} for m in map(json.loads, open(run_dir / "metrics.jsonl"))]
    return {k: alphas[k] for k in ("normal", "reduce")}, load_genotype(str(run_dir)), metrics


def _assert_same_run(a, b):
    (alphas_a, geno_a, metrics_a), (alphas_b, geno_b, metrics_b) = _final(a), _final(b)
    for k in alphas_a:
        np.testing.assert_array_equal(alphas_a[k], alphas_b[k])  # bit-identical
    assert geno_a == geno_b
    assert metrics_a == metrics_b
    hist_a, hist_b = np.load(a / "alphas_history.npz"), np.load(b / "alphas_history.npz")
    np.testing.assert_array_equal(hist_a["normal"], hist_b["normal"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run, the yardstick of every resume test."""
    out = tmp_path_factory.mktemp("ref") / "run"
    result = search(out=out, checkpoint_every=1, **{**TINY, "plots": True})
    return out, result


def test_run_directory_describes_itself(reference):
    out, result = reference
    for name in ("config.json", "meta.json", "metrics.jsonl", "alphas.npz", "alphas_history.npz", "genotype.json",
                 "checkpoint.pt", "cell.png", "alphas_normal.png", "alphas_reduce.png", "curves.png",
                 "alpha_evolution_normal.png"):  # fmt: skip
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["channels"] == 4 and config["epochs"] == 2 and config["lr_min"] == 0.001
    meta = json.loads((out / "meta.json").read_text())
    assert meta["torch_version"] == torch.__version__ and meta["end_time"] and meta["device"] == "cpu"
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [m["epoch"] for m in metrics] == [0, 1]
    assert {"train_loss", "train_acc", "search_loss", "search_acc", "valid_acc", "lr", "genotype", "time_s"} <= set(
        metrics[0]
    )
    # cosine schedule of SPEC 1.5: epoch 0 at lr, epoch 1 of 2 at the midpoint
    assert metrics[0]["lr"] == pytest.approx(0.025) and metrics[1]["lr"] == pytest.approx((0.025 + 0.001) / 2)
    hist = np.load(out / "alphas_history.npz")
    assert hist["normal"].shape == (3, 14, 8)  # initial + one per epoch
    np.testing.assert_allclose(hist["normal"].sum(-1), 1.0, rtol=1e-5)
    assert result.genotype == load_genotype(str(out))
    assert result.genotype == load_genotype(json.dumps({"format": "cellnas.genotype", "version": 1,
                                                        **metrics[-1]["genotype"]}))  # fmt: skip


def _crash_then_resume(out, crash_search, crash_at: int, **kw) -> None:
    """A run that crashes when step ``crash_at`` starts (checkpoints every step), then ``--resume``."""
    crash_search(out, crash_at, checkpoint_every=1, **kw, **TINY)
    search(resume=out)


@pytest.mark.parametrize("crash_at", [2, 3, 5], ids=["mid-epoch", "epoch-boundary", "last-epoch"])
def test_crashed_run_resumes_bit_identical(reference, tmp_path, crash_search, crash_at):
    _crash_then_resume(tmp_path / "run", crash_search, crash_at)
    _assert_same_run(reference[0], tmp_path / "run")


def test_sigkilled_process_resumes_bit_identical(reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cellnas.cli", "search", "--out", str(out), "--no-progress", "--no-plots",
           "--checkpoint-every", "1", "-C", "4", "-L", "3", "--batch-size", "32", "--epochs", "2",
           "--steps-per-epoch", "3"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoint.pt").exists()
    search(resume=out)
    _assert_same_run(reference[0], out)


@pytest.mark.parametrize(
    "sigint_at, where, position",
    [
        (3, "after step 1/3 of epoch 2/2", (1, 1)),  # the 4th step: the first of epoch 2
        (2, "after epoch 1/2", (1, 0)),  # the 3rd step, the last of epoch 1: the epoch is finished first
    ],
    ids=["mid-epoch", "last-step-of-epoch"],
)
def test_ctrl_c_writes_a_checkpoint_and_resume_finishes_identically(
    reference, tmp_path, monkeypatch, caplog, sigint_at, where, position
):
    out = tmp_path / "run"
    real_step = search_loop._Search.step

    def interrupted_step(self, lr):
        real_step(self, lr)
        if self.global_step == sigint_at:  # Ctrl-C arrives while this step runs
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(search_loop._Search, "step", interrupted_step)
    with pytest.raises(RunError, match=f"interrupted {where}; checkpoint written.*--resume"):
        search(out=out, **TINY)
    monkeypatch.setattr(search_loop._Search, "step", real_step)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step_in_epoch"]) == position
    with caplog.at_level(logging.INFO, logger="cellnas"):
        search(resume=out)
    assert f"resuming {out} {where}" in caplog.text  # counted from 1, like the "epoch 2/2" progress lines
    _assert_same_run(reference[0], out)


@pytest.fixture(scope="module")
def alpha_reference(tmp_path_factory):
    """An uninterrupted tiny run that records softmax(α) after every step."""
    out = tmp_path_factory.mktemp("ref_alpha") / "run"
    search(out=out, checkpoint_every=1, alpha_every=1, **TINY)
    return out


def test_alpha_every_records_each_step_once(alpha_reference):
    hist = np.load(alpha_reference / "alphas_history.npz")
    np.testing.assert_array_equal(hist["step"], np.arange(7))  # the end of an epoch is not recorded twice
    np.testing.assert_allclose(hist["epoch"], np.arange(7) / 3)
    assert hist["normal"].shape == (7, 14, 8)


@pytest.mark.parametrize("crash_at", [2, 3], ids=["mid-epoch", "epoch-boundary"])
def test_alpha_history_of_a_resumed_run_equals_the_uninterrupted_one(alpha_reference, tmp_path, crash_search, crash_at):
    out = tmp_path / "run"
    _crash_then_resume(out, crash_search, crash_at, alpha_every=1)
    hist, ref = np.load(out / "alphas_history.npz"), np.load(alpha_reference / "alphas_history.npz")
    np.testing.assert_array_equal(hist["step"], np.arange(7))
    for key in ("step", "epoch", "normal", "reduce"):
        np.testing.assert_array_equal(hist[key], ref[key])


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_step = search_loop._Search.step

    def poisoned_step(self, lr):
        if self.global_step == 4:
            with torch.no_grad():
                self.model.weight_parameters()[0].fill_(float("nan"))
        return real_step(self, lr)

    monkeypatch.setattr(search_loop._Search, "step", poisoned_step)
    with pytest.raises(RunError, match=r"non-finite .* at epoch 2 step 2.*last good checkpoint"):  # 5th step
        search(out=out, checkpoint_every=1, **TINY)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_second_order_and_single_level_runs_complete(tmp_path):
    r2 = search(out=tmp_path / "o2", order=2, **{**TINY, "epochs": 1, "steps_per_epoch": 2})
    r1 = search(out=tmp_path / "sl", mode="single-level", **{**TINY, "epochs": 1, "steps_per_epoch": 2})
    assert r2.genotype.normal.n_nodes == 4 and r1.genotype.normal.n_nodes == 4


def test_single_level_mode_never_draws_a_search_batch(tmp_path, monkeypatch):
    from cellnas.data import DeviceLoader

    calls = []
    real_next = DeviceLoader.next
    def spy(self):
        if self.shuffle:  # the two training streams; the un-augmented evaluation pass is not shuffled
            calls.append(id(self))
        return real_next(self)

    monkeypatch.setattr(DeviceLoader, "next", spy)
    search(out=tmp_path / "sl", mode="single-level", **{**TINY, "epochs": 1, "steps_per_epoch": 3})
    assert len(calls) == 3 and len(set(calls)) == 1
    calls.clear()
    search(out=tmp_path / "bl", **{**TINY, "epochs": 1, "steps_per_epoch": 3})
    assert len(calls) == 6 and len(set(calls)) == 2  # bilevel: a training and a search batch per step


def test_fresh_search_batches_sample_every_step_and_resume_bit_identical(tmp_path, monkeypatch, crash_search):
    from cellnas.data import DeviceLoader

    sampled = []
    real_sample = DeviceLoader.sample

    def spy(self):
        sampled.append(id(self))
        return real_sample(self)

    monkeypatch.setattr(DeviceLoader, "sample", spy)
    search(out=tmp_path / "whole", search_batches="fresh", checkpoint_every=1, **TINY)
    assert len(sampled) == 6 and len(set(sampled)) == 1  # one architecture batch per step, from the search split
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["search_batches"] == "fresh"
    _crash_then_resume(tmp_path / "crashed", crash_search, 4, search_batches="fresh")
    _assert_same_run(tmp_path / "whole", tmp_path / "crashed")


def test_all_normal_supernet_with_two_nodes(tmp_path):
    result = search(out=tmp_path / "min", all_normal=True, nodes=2, **{**TINY, "epochs": 1, "steps_per_epoch": 2})
    assert result.genotype.normal.n_nodes == 2
    history = np.load(tmp_path / "min" / "alphas_history.npz")
    assert history["normal"].shape[1:] == (5, 8)
    # the reduce cell's alpha, read by no loss, stays at its initial value (Adam's weight decay left it alone)
    assert np.array_equal(history["reduce"][0], history["reduce"][-1])
    assert not np.array_equal(history["normal"][0], history["normal"][-1])


def test_an_all_normal_search_marks_its_reduce_cell_as_not_searched_and_readers_warn(tmp_path, caplog):
    from cellnas.formats import load_genotype

    result = search(out=tmp_path / "flat", all_normal=True, **{**TINY, "epochs": 1, "steps_per_epoch": 1})
    doc = json.loads((result.run_dir / "genotype.json").read_text())
    assert doc["unsearched"] == ["reduce"]
    assert "not searched" not in caplog.text  # the search itself does not warn about its own file
    assert load_genotype(result.run_dir) == result.genotype
    assert "its reduce cell was not searched" in caplog.text
    caplog.clear()
    plain = search(out=tmp_path / "both", **{**TINY, "epochs": 1, "steps_per_epoch": 1})
    assert "unsearched" not in json.loads((plain.run_dir / "genotype.json").read_text())
    load_genotype(plain.run_dir)
    assert "not searched" not in caplog.text


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--epochs", "-1"], "--epochs must be >= 1"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--preset", "nope"], "invalid choice"),
        (["--ops", "sep_conv_3x3,conv_9x9"], "unknown op 'conv_9x9'"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/dir"], "--data-dir"),
        (["--resume", "/nonexistent/run"], "cannot resume"),
    ],
)
def test_bad_options_give_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["search", "--no-progress", *argv])
    except SystemExit as exc:  # argparse's own errors (invalid choice) exit 2 with usage
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_existing_run_is_never_overwritten_and_corrupt_checkpoint_is_refused(reference, tmp_path, capsys):
    out, _ = reference
    before = (out / "metrics.jsonl").read_bytes()
    assert main(["search", "--no-progress", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_bytes() == before
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CellnasError, match="corrupt"):
        search(resume=bad)


def test_python_api_cellnas_search_returns_a_result(tmp_path):
    import cellnas

    result = cellnas.search(out=tmp_path / "api", **{**TINY, "epochs": 1, "steps_per_epoch": 1})
    assert result.run_dir == tmp_path / "api" and result.genotype == load_genotype(str(result.run_dir))
    assert 0.0 <= result.search_accuracy <= 1.0


CLI_TINY = ["--no-progress", "--no-plots", "-C", "4", "-L", "3", "--batch-size", "32", "--steps-per-epoch", "2"]


def test_the_summary_says_which_time_is_training_and_which_the_whole_command(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *CLI_TINY, "--epochs", "1", "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    meta = json.loads((out / "meta.json").read_text())
    assert summary["search_seconds"] == round(meta["search_seconds"], 1)  # training steps, as meta.json says
    assert summary["seconds"] >= summary["search_seconds"]  # the whole command
    assert main(["search", "--resume", str(out), "--epochs", "2", "--no-progress", "--no-plots"]) == 0
    text = capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    # a resumed run's training time adds up every session; the command's own time is this session's
    assert f"search time {meta['search_seconds']:.0f} s (training, all sessions)" in text
    assert " s in all for this session" in text
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "search_seconds" in capsys.readouterr().out


def test_ctrl_c_in_the_cli_exits_130_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_step = search_loop._Search.step

    def interrupted_step(self, lr):
        real_step(self, lr)
        if self.global_step == 0:  # Ctrl-C during the first step
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(search_loop._Search, "step", interrupted_step)
    assert main(["search", *CLI_TINY, "--epochs", "1", "--out", str(out)]) == 130  # 128 + SIGINT, not usage's 2
    err = capsys.readouterr().err
    assert "checkpoint written" in err and f"cellnas search --resume {out}" in err and "Traceback" not in err


# -- review fixes: search metrics of an unequal split, option ranges, --config files, resume, few layers, help,
#    the run directory's lock

SMALL = dict(channels=4, layers=3, batch_size=16, epochs=1, steps_per_epoch=2, progress=False, plots=False)


class _Bar:
    """Stands in for the tqdm bar: keeps what the loop shows."""

    def __init__(self):
        self.postfix = {}

    def set_description(self, *a, **k):
        pass

    def set_postfix(self, refresh=True, **kw):
        self.postfix = kw

    def update(self, n=1):
        pass

    def clear(self):
        pass

    def close(self):
        pass


def test_search_loss_and_accuracy_of_an_unequal_split_average_over_the_search_batches(tmp_path, monkeypatch, caplog):
    # train portion 0.995 of digits' 1,438 images: 1,430 train the weights (batches of 16), 8 train α (batches of 8)
    seen = []
    real_step = search_loop.Architect.step

    def spy(self, x_t, y_t, x_v, y_v, eta):
        loss, logits = real_step(self, x_t, y_t, x_v, y_v, eta)
        seen.append((float(loss), int((logits.argmax(1) == y_v).sum()), y_v.numel()))
        return loss, logits

    bar = _Bar()
    monkeypatch.setattr(search_loop.Architect, "step", spy)
    monkeypatch.setattr(search_loop, "_progress", lambda cfg, total, initial: bar)
    with caplog.at_level(logging.INFO, logger="cellnas"):
        result = search(out=tmp_path / "run", train_portion=0.995, **SMALL)
    assert [n for _, _, n in seen] == [8, 8]
    loss = sum(v * n for v, _, n in seen) / sum(n for *_, n in seen)
    acc = sum(c for _, c, _ in seen) / sum(n for *_, n in seen)
    (record,) = result.metrics
    assert record["search_loss"] == pytest.approx(loss, rel=1e-6) and record["search_loss"] > 2.0  # ~ln 10 at start
    assert record["search_acc"] == pytest.approx(acc) and 0.0 <= record["search_acc"] <= 1.0
    assert f"search {loss:.3f}/{acc:.3f}" in caplog.text  # the epoch line
    assert bar.postfix["search_acc"] == f"{acc:.3f}"  # the progress bar


def test_a_checkpoint_without_the_search_count_still_resumes(reference, tmp_path, monkeypatch):
    """Checkpoints written before the search side had its own count: resumed mid-epoch with the training count
    (what they divided by), exact at the default split, where both sides draw full batches of the same size."""
    out = tmp_path / "run"
    real_step = search_loop._Search.step

    def crashing_step(self, lr):
        if self.global_step == 2:
            raise RuntimeError("simulated crash")
        return real_step(self, lr)

    monkeypatch.setattr(search_loop._Search, "step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        search(out=out, checkpoint_every=1, **TINY)
    monkeypatch.setattr(search_loop._Search, "step", real_step)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["accumulators"].pop("search_n") == 64  # two search batches of 32 so far
    torch.save(state, out / "checkpoint.pt")
    search(resume=out)
    _assert_same_run(reference[0], out)


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"grad_clip": -1.0}, "--grad-clip must be positive, got -1.0"),
        ({"grad_clip": 0}, "--grad-clip must be positive, got 0"),
        ({"grad_clip": float("nan")}, "--grad-clip must be positive"),
        ({"lr": 0}, "--lr must be positive, got 0"),
        ({"lr": float("inf")}, "--lr must be a finite number, got inf"),
        ({"arch_lr": -3e-4}, "--arch-lr must be positive, got -0.0003"),
        ({"lr_min": -0.1}, "--lr-min must be in [0, lr], got -0.1"),
        ({"lr_min": 0.5}, "--lr-min must be in [0, lr], got 0.5"),
        ({"momentum": 1.0}, "--momentum must be in [0, 1), got 1.0"),
        ({"momentum": -0.1}, "--momentum must be in [0, 1)"),
        ({"weight_decay": -1e-4}, "--weight-decay must be >= 0, got -0.0001"),
        ({"arch_weight_decay": -1e-3}, "--arch-weight-decay must be >= 0, got -0.001"),
        ({"weight_decay": float("inf")}, "--weight-decay must be a finite number"),
        ({"train_portion": 1.0}, "--train-portion must be in (0, 1), got 1.0"),
        ({"train_portion": 0}, "--train-portion must be in (0, 1)"),
        ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
        ({"k": 3}, "--k (inputs kept per node) must be 1 or 2, got 3"),
        ({"k": 0}, "--k (inputs kept per node) must be 1 or 2, got 0"),
        ({"eval_every": -1}, "--eval-every must be >= 0, got -1"),
        ({"arch_betas": (0.5, 1.0)}, "\"arch_betas\" in the config must be two numbers in [0, 1), got (0.5, 1.0)"),
        ({"unrolled_eps": 0}, "\"unrolled_eps\" in the config must be positive, got 0"),
    ],
)
def test_search_values_that_cannot_be_meant_are_refused_naming_the_flag(values, needle):
    from cellnas.search.config import resolve_config

    with pytest.raises(CellnasError) as err:
        resolve_config(None, values)
    assert needle in str(err.value)


@pytest.mark.parametrize("argv", [["--grad-clip=-1"], ["--grad-clip", "0"], ["--lr=-0.1"], ["--weight-decay=-1"]])
def test_cli_refuses_a_negative_or_zero_grad_clip_and_writes_nothing(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert argv[0].split("=")[0] in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text", ["[1, 2]", '"digits"', "null", "3"])
def test_a_config_file_that_is_not_a_json_object_gives_one_line(text, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.json"
    path.write_text(text)
    assert main(["search", "--no-progress", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"--config {path} must hold a JSON object" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_extending_a_finished_search_rewrites_config_json(tmp_path, caplog):
    out = tmp_path / "run"
    search(out=out, **SMALL)
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    with caplog.at_level("WARNING"):
        assert main(["search", "--resume", str(out), "--epochs", "2", "--no-progress", "--no-plots"]) == 0
    said = [r.getMessage() for r in caplog.records if "cosine learning rate is recomputed" in r.getMessage()]
    assert len(said) == 1 and "from 1 to 2 epochs" in said[0]  # said once, by the library, after the lock
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    assert torch.load(out / "checkpoint.pt", weights_only=False)["config"]["epochs"] == 2
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".tmp")]
    assert main(["search", "--resume", str(out), "--epochs", "1", "--no-progress", "--no-plots"]) == 2  # fewer


@pytest.mark.parametrize("layers", [1, 2])
def test_a_supernet_of_reduction_cells_only_marks_its_normal_cell_as_not_searched(layers, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    argv = ["search", "--no-progress", "--no-plots", "-C", "4", "-L", str(layers), "--batch-size", "16",
            "--steps-per-epoch", "1", "--epochs", "1", "--out", str(out)]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="cellnas"):
        assert main(argv) == 0
    assert json.loads((out / "genotype.json").read_text())["unsearched"] == ["normal"]
    text = capsys.readouterr().out
    assert "normal cell: not searched (--layers" in text and "normal cell: width" not in text
    assert "reduce cell: width" in text
    assert caplog.text.count("every cell is a reduction cell") == 1
    epoch_line = next(line for line in caplog.text.splitlines() if "epoch 1/1" in line)
    assert "reduce " in epoch_line and "normal " not in epoch_line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cellnas"):
        assert main(["search", "--resume", str(out), "--epochs", "2", "--no-progress", "--no-plots"]) == 0
    assert "every cell is a reduction cell" not in caplog.text  # said once, when the run starts
    assert json.loads((out / "genotype.json").read_text())["unsearched"] == ["normal"]
    from cellnas.plots.search import plot_search_run

    drawn = {p.name for p in plot_search_run(out)}
    assert "alphas_reduce.png" in drawn and "alphas_normal.png" not in drawn  # no heatmap of untrained α


def test_search_help_states_the_default_of_every_option_that_takes_a_value():
    from cellnas.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["search"]
    # no default to state: a file or directory to read, repeatable edge ablations
    exempt = {"--config", "--resume", "--remove-edge", "--fix-edge", "-h"}
    missing = [a.option_strings[0] for a in sub._actions
               if a.option_strings and a.nargs != 0 and not exempt & set(a.option_strings)
               and "default" not in (a.help or "")]  # fmt: skip
    assert missing == []
    helps = {a.option_strings[0]: a.help for a in sub._actions if a.option_strings}
    assert "(default fd" in helps["--hvp"] and "(default bilevel" in helps["--mode"]
    assert "(default 1" in helps["--eval-every"]


def _hold_lock(run_dir):
    """A second process that holds ``run_dir``'s lock until its stdin closes."""
    code = (f"import sys\nfrom cellnas.runs import run_lock\nwith run_lock({str(run_dir)!r}):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _snapshot(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"}


def test_a_search_run_directory_in_use_is_refused_and_left_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    search(out=out, **SMALL)
    assert (out / ".lock").is_file()  # the search held it
    before = _snapshot(out)
    holder = _hold_lock(out)
    try:
        assert main(["search", "--resume", str(out), "--epochs", "2", "--no-progress", "--no-plots"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by another cellnas process (pid {holder.pid})" in err and "Traceback" not in err
        assert _snapshot(out) == before  # nothing written, config.json included
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert main(["search", "--resume", str(out), "--epochs", "2", "--no-progress", "--no-plots"]) == 0


def test_a_directory_holding_only_a_lock_file_is_refused_while_held_and_used_when_free(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold_lock(out)  # a search that is starting (still loading its data)
    try:
        assert main(["search", "--no-progress", "--no-plots", "--out", str(out)]) == 2
        assert f"(pid {holder.pid})" in capsys.readouterr().err
        assert [p.name for p in out.iterdir()] == [".lock"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # a start that died before writing anything left the lock file alone: the directory is free for a new run
    result = search(out=out, **SMALL)
    assert result.run_dir == out and (out / "checkpoint.pt").is_file()


def test_a_failed_start_leaves_no_run_directory_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CellnasError, match="--data-dir"):
        search(dataset="cifar10", data_dir=str(tmp_path / "nowhere"), **SMALL)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
