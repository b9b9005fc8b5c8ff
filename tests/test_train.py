"""Retraining (SPEC 2.1-2.3, 5.6): presets, schedules, mixup maths, exact resume, NaN stop, final.pt and evaluate."""

from __future__ import annotations

import json
import logging
import math
import os
import signal

import pytest
import torch

from cellnas.errors import CellnasError, RunError
from cellnas.train import PRESETS, TrainInterrupted, evaluate, resolve_config, train
from cellnas.train import loop as loop_mod
from cellnas.train.mixup import mixed_cross_entropy, mixup_batch, sample_lambda
from cellnas.train.setup import DeviceOptions, build_model, drop_path_at, learning_rate_at

# a network small enough that an epoch of digits takes well under a second
TINY = dict(dataset="digits", channels=4, layers=3, batch_size=64, progress=False)


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final.pt", weights_only=True)["state_dict"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _strip_times(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in metrics]


# ------------------------------------------------------------------------------------------ config


def test_darts_cifar10_preset_is_the_spec_protocol():
    cfg = resolve_config("darts-cifar10")
    assert (cfg.dataset, cfg.network, cfg.layers, cfg.channels, cfg.batch_size, cfg.epochs) == (
        "cifar10", "cifar", 20, 36, 96, 600)  # fmt: skip
    assert (cfg.lr, cfg.lr_schedule, cfg.lr_min, cfg.momentum, cfg.weight_decay) == (0.025, "cosine", 0.0, 0.9, 3e-4)
    assert (cfg.cutout, cfg.drop_path, cfg.auxiliary, cfg.auxiliary_weight, cfg.grad_clip, cfg.seed) == (
        16, 0.2, True, 0.4, 5.0, 0)  # fmt: skip
    assert cfg.mixup == 0.0 and cfg.label_smoothing == 0.0


def test_imagenet_and_nb301_presets():
    im = resolve_config("darts-imagenet")
    assert (im.network, im.layers, im.channels, im.batch_size, im.epochs, im.image_size) == (
        "imagenet", 14, 48, 128, 250, 224)  # fmt: skip
    assert (im.lr, im.lr_schedule, im.lr_gamma, im.weight_decay, im.label_smoothing, im.drop_path) == (
        0.1, "step", 0.97, 3e-5, 0.1, 0.0)  # fmt: skip
    nb = resolve_config("nb301-proxy")
    assert (nb.layers, nb.channels, nb.epochs, nb.batch_size, nb.lr_min, nb.mixup, nb.cutout, nb.drop_path) == (
        8, 32, 100, 96, 1e-8, 0.2, 16, 0.2)  # fmt: skip
    assert resolve_config("darts-cifar100").dataset == "cifar100"


def test_dataset_picks_its_preset_and_overrides_win():
    assert resolve_config(None, {"dataset": "cifar10"}).preset == "darts-cifar10"
    cfg = resolve_config(None, {"dataset": "cifar100", "epochs": 3, "weight_decay": 5e-4})
    assert (cfg.preset, cfg.epochs, cfg.weight_decay, cfg.layers) == ("darts-cifar100", 3, 5e-4, 20)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(CellnasError) as err:
        resolve_config("darts-cifar11")
    for name in PRESETS:
        assert name in str(err.value)


def test_a_preset_meant_for_another_dataset_warns_naming_both(caplog, monkeypatch):
    """Presets fix hyper-parameters only (classes and channels come from the dataset), so a mismatch runs, loudly."""
    from cellnas.train import config as config_mod

    monkeypatch.setattr(config_mod, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="cellnas.train.config"):
        cfg = resolve_config("darts-cifar100", {"dataset": "cifar10"})
    assert (cfg.dataset, cfg.preset, cfg.layers) == ("cifar10", "darts-cifar100", 20)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    msg = warning.getMessage()
    assert "'darts-cifar100'" in msg and "for cifar100" in msg and "--dataset cifar10" in msg
    assert "darts-cifar10 " in msg and "\n" not in msg  # names cifar10's own preset, on one line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cellnas.train.config"):
        resolve_config("darts-cifar10", {"dataset": "cifar10"})
        resolve_config(None, {"dataset": "cifar100"})
        resolve_config("darts-imagenet", {"dataset": "imagefolder:/data/imagenet-100"})  # any image folder fits
        resolve_config("nb301-proxy")
        resolve_config("darts-cifar100", {"dataset": "cifar10", "epochs": 2})  # said once, not once per run
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_bad_values_name_their_flag():
    with pytest.raises(CellnasError, match="--drop-path"):
        resolve_config(None, {"drop_path": 1.5})
    with pytest.raises(CellnasError, match="unknown train config key"):
        resolve_config(None, {"epochz": 3})


# ------------------------------------------------------------------------------------------ schedules


def test_drop_path_ramps_linearly_from_zero():
    assert [drop_path_at(0.2, e, 600) for e in (0, 300, 599)] == [0.0, 0.1, 0.2 * 599 / 600]


def test_learning_rate_cosine_to_lr_min_and_step_decay():
    cfg = resolve_config("darts-cifar10")
    assert learning_rate_at(cfg, 0) == 0.025
    assert learning_rate_at(cfg, 300) == pytest.approx(0.0125)
    assert learning_rate_at(cfg, 599) == pytest.approx(0.025 * (1 + math.cos(math.pi * 599 / 600)) / 2)
    im = resolve_config("darts-imagenet")
    assert learning_rate_at(im, 10) == pytest.approx(0.1 * 0.97**10)


def test_metrics_record_the_ramped_drop_path_and_lr(tmp_path):
    r = train("DARTS_V2", out=tmp_path / "run", epochs=3, drop_path=0.3, steps_per_epoch=2, **TINY)
    assert [m["drop_path_prob"] for m in r.metrics] == pytest.approx([0.0, 0.1, 0.2])
    assert [m["lr"] for m in r.metrics] == pytest.approx([learning_rate_at(r.config, e) for e in range(3)])
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "test_error", "best_test_error", "time_s"):
        assert key in r.metrics[-1]
    assert r.best_test_error == min(m["test_error"] for m in r.metrics)
    assert (r.run_dir / "curves.png").stat().st_size > 0
    assert json.loads((r.run_dir / "summary.json").read_text())["last_test_error"] == r.last_test_error


# ------------------------------------------------------------------------------------------ mixup


def test_mixup_mixes_inputs_and_targets_with_one_lambda():
    x = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6)  # y[π] reveals the permutation
    xm, ya, yb, lam = mixup_batch(x, y, 0.4, torch.Generator().manual_seed(0))
    assert torch.equal(ya, y) and sorted(yb.tolist()) == list(range(6))
    assert torch.allclose(xm, lam * x + (1 - lam) * x[yb])
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(2))
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(
        mixed_cross_entropy(logits, ya, yb, lam), lam * ce(logits, ya) + (1 - lam) * ce(logits, yb)
    )
    assert torch.equal(mixed_cross_entropy(logits, ya, yb, 1.0), ce(logits, ya))


def test_mixup_lambda_comes_from_the_seeded_generator_only():
    before = torch.get_rng_state()
    a = [sample_lambda(0.2, torch.Generator().manual_seed(7)) for _ in range(2)]
    gen = torch.Generator().manual_seed(7)
    b = [sample_lambda(0.2, gen) for _ in range(2)]
    assert a[0] == a[1] == b[0] != b[1]
    assert torch.equal(torch.get_rng_state(), before)
    assert sample_lambda(0.0, gen) == 1.0


def test_mixup_lambda_is_beta_alpha_alpha():
    gen = torch.Generator().manual_seed(0)
    lams = torch.tensor([sample_lambda(0.2, gen) for _ in range(4000)], dtype=torch.float64)
    assert float(lams.min()) >= 0.0 and float(lams.max()) <= 1.0
    assert float(lams.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(lams.var()) == pytest.approx(1 / (4 * (2 * 0.2 + 1)), abs=0.015)  # Var Beta(a, a)


# ------------------------------------------------------------------------------------------ network and device


def test_weights_depend_on_the_seed_alone_and_leave_global_rng_alone():
    from cellnas.data import get_dataset
    from cellnas.zoo import get_genotype

    ds, g = get_dataset("digits"), get_genotype("DARTS_V2")
    before = torch.get_rng_state()
    a = build_model(g, resolve_config(None, {**TINY, "seed": 3}), ds).state_dict()
    b = build_model(g, resolve_config(None, {**TINY, "seed": 3}), ds).state_dict()
    c = build_model(g, resolve_config(None, {**TINY, "seed": 4}), ds).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    _assert_same_weights(a, b)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_cpu_defaults_to_fp32_nchw():
    opts = DeviceOptions(resolve_config(None, TINY), torch.device("cpu"))
    assert (opts.bf16, opts.channels_last, opts.compile) == (False, False, False)
    forced = DeviceOptions(resolve_config(None, {**TINY, "amp": "bf16", "channels_last": "on"}), torch.device("cpu"))
    assert (forced.bf16, forced.channels_last) == (True, True)


# ------------------------------------------------------------------------------------------ resume


def test_resume_after_one_epoch_equals_two_epochs_straight(tmp_path):
    kw = dict(TINY, steps_per_epoch=4, drop_path=0.3, mixup=0.3, cutout=3, label_smoothing=0.1)
    straight = train("DARTS_V2", out=tmp_path / "a", epochs=2, **kw)
    train("DARTS_V2", out=tmp_path / "b", epochs=1, **kw)
    resumed = train(resume=tmp_path / "b", epochs=2)
    _assert_same_weights(_weights(straight.run_dir), _weights(resumed.run_dir))
    assert _strip_times(straight.metrics) == _strip_times(resumed.metrics)


def test_resume_from_a_mid_epoch_checkpoint_after_a_crash(tmp_path, monkeypatch):
    kw = dict(TINY, epochs=2, steps_per_epoch=5, drop_path=0.3, mixup=0.3, cutout=3)
    straight = train("DARTS_V2", out=tmp_path / "a", **kw)
    real_step = loop_mod._Training.step

    def crashing_step(self):
        if self.global_step == 7:  # after the mid-epoch checkpoint at global step 6 (epoch 1, step 1)
            raise RuntimeError("power cut")
        real_step(self)

    monkeypatch.setattr(loop_mod._Training, "step", crashing_step)
    with pytest.raises(RuntimeError, match="power cut"):
        train("DARTS_V2", out=tmp_path / "b", checkpoint_every=3, **kw)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
    monkeypatch.setattr(loop_mod._Training, "step", real_step)
    resumed = train(resume=tmp_path / "b")
    _assert_same_weights(_weights(straight.run_dir), _weights(resumed.run_dir))
    assert _strip_times(straight.metrics) == _strip_times(resumed.metrics)


def test_ctrl_c_writes_a_checkpoint_and_the_run_resumes_exactly(tmp_path, monkeypatch):
    kw = dict(TINY, epochs=2, steps_per_epoch=4, drop_path=0.3, mixup=0.3)
    straight = train("DARTS_V2", out=tmp_path / "a", **kw)
    real_step = loop_mod._Training.step

    def interrupted_step(self):
        real_step(self)
        if self.global_step == 5:  # this is step 6 in all; the handler asks the loop to stop after it
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop_mod._Training, "step", interrupted_step)
    with pytest.raises(TrainInterrupted, match="interrupted after step 2/4 of epoch 2/2; .*--resume"):
        train("DARTS_V2", out=tmp_path / "b", **kw)  # counted from 1, as the progress lines count
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    monkeypatch.setattr(loop_mod._Training, "step", real_step)
    resumed = train(resume=tmp_path / "b")
    _assert_same_weights(_weights(straight.run_dir), _weights(resumed.run_dir))


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = loop_mod.mixed_cross_entropy

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss  # the 2nd step of the 2nd epoch (3 per epoch)

    monkeypatch.setattr(loop_mod, "mixed_cross_entropy", poisoned)
    with pytest.raises(RunError, match="epoch 2 step 2") as err:  # counted from 1, as the progress lines count
        train("DARTS_V2", out=tmp_path / "run", epochs=3, steps_per_epoch=3, auxiliary=False, **TINY)
    assert "\n" not in str(err.value) and "checkpoint" in str(err.value)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "final.pt").exists()


def test_resume_errors(tmp_path):
    with pytest.raises(RunError, match="not a directory"):
        train(resume=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="holds no checkpoint.pt"):
        train(resume=tmp_path / "empty")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="corrupt"):
        train(resume=tmp_path / "corrupt")
    (tmp_path / "search").mkdir()
    torch.save({"version": 1, "config": {}}, tmp_path / "search" / "checkpoint.pt")
    with pytest.raises(RunError, match="not a cellnas train checkpoint"):
        train(resume=tmp_path / "search")


def test_resume_refuses_a_checkpoint_from_another_run_and_records_the_new_epochs(tmp_path):
    kw = dict(TINY, steps_per_epoch=1, epochs=1)
    train("DARTS_V2", out=tmp_path / "a", **kw)
    train("DARTS_V1", out=tmp_path / "b", **{**kw, "channels": 2})
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("config.json", "genotype.json", "metrics.jsonl"):
        (mixed / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (mixed / "checkpoint.pt").write_bytes((tmp_path / "b" / "checkpoint.pt").read_bytes())
    with pytest.raises(CellnasError, match="does not belong to this run") as err:
        train(resume=mixed, epochs=2)
    assert "genotype.json" in str(err.value) and "channels" in str(err.value)
    train(resume=tmp_path / "a", epochs=2)  # README: config.json is the config to re-run with --config
    assert json.loads((tmp_path / "a" / "config.json").read_text())["epochs"] == 2


def test_non_empty_out_is_refused_and_left_intact(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        train("DARTS_V2", out=tmp_path / "run", epochs=1, **TINY)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------ final.pt


def test_evaluate_final_pt_alone_reproduces_the_recorded_test_accuracy(tmp_path):
    r = train("DARTS_V2", out=tmp_path / "run", epochs=2, steps_per_epoch=6, **TINY)
    lone = tmp_path / "elsewhere" / "model.pt"
    lone.parent.mkdir()
    lone.write_bytes((r.run_dir / "final.pt").read_bytes())
    report = evaluate(lone, dataset="digits")
    assert report["test_acc"] == r.metrics[-1]["test_acc"]
    assert report["test_loss"] == pytest.approx(r.metrics[-1]["test_loss"], rel=1e-5)
    assert report["params"] == r.params and report["n_test"] == 359


def test_evaluate_rejects_foreign_files(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        evaluate(tmp_path / "final.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(RunError, match="not a cellnas final.pt"):
        evaluate(tmp_path / "other.pt")


# ------------------------------------------------------------------------------------------ seeds and configs


def test_interrupted_seeds_run_resumes_from_its_parent_directory(tmp_path, monkeypatch):
    from cellnas.train import train_seeds

    real_step = loop_mod._Training.step

    def interrupted_step(self):
        real_step(self)
        if self.cfg.seed == 1 and self.global_step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop_mod._Training, "step", interrupted_step)
    kw = dict(TINY, epochs=1, steps_per_epoch=3)
    with pytest.raises(TrainInterrupted, match=f"--resume {tmp_path / 'p'}"):
        train_seeds("DARTS_V2", [0, 1], out=tmp_path / "p", **kw)
    assert not (tmp_path / "p" / "summary.json").exists()
    monkeypatch.setattr(loop_mod._Training, "step", real_step)
    result = train_seeds(None, [], resume=tmp_path / "p")
    assert [r["seed"] for r in result.summary["runs"]] == [0, 1]
    alone = train("DARTS_V2", out=tmp_path / "alone", seed=1, **kw)
    assert result.runs[1].last_test_error == alone.last_test_error


def test_a_given_config_takes_overrides_but_not_a_preset(tmp_path):
    from cellnas.train.loop import config_from

    base = resolve_config("darts-cifar10")
    cfg = config_from(base, None, {"epochs": 3, "lr": None})
    assert (cfg.epochs, cfg.lr, base.epochs) == (3, 0.025, 600)
    with pytest.raises(CellnasError, match="not both"):
        config_from(base, "digits", {})


# ------------------------------------------------------------------------------------------ device options on CPU


def test_bf16_autocast_on_cpu_trains_and_its_loss_is_close_to_fp32(tmp_path):
    kw = dict(TINY, epochs=1, steps_per_epoch=1, plots=False)
    fp32 = train("DARTS_V2", out=tmp_path / "fp32", **kw)
    bf16 = train("DARTS_V2", out=tmp_path / "bf16", amp="bf16", **kw)
    (a,), (b,) = fp32.metrics, bf16.metrics
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.02)
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=0.02)
    state = _weights(bf16.run_dir)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())  # weights stay fp32
    assert json.loads((bf16.run_dir / "meta.json").read_text())["precision"].startswith("bf16")


def test_compile_trains_a_step_and_tests_it(tmp_path):
    """--compile on CPU: one compiled training step, then the test pass (run by the plain module) and final.pt."""
    import time

    t0 = time.perf_counter()
    r = train("DARTS_V2", out=tmp_path / "run", compile=True, epochs=1, steps_per_epoch=1, plots=False, **TINY)
    plain = train("DARTS_V2", out=tmp_path / "plain", epochs=1, steps_per_epoch=1, plots=False, **TINY)
    assert r.metrics[0]["train_loss"] == pytest.approx(plain.metrics[0]["train_loss"], rel=1e-4)
    assert r.metrics[0]["test_acc"] == pytest.approx(plain.metrics[0]["test_acc"], abs=0.01)
    assert (r.run_dir / "final.pt").is_file()
    if time.perf_counter() - t0 > 60:  # torch.compile's first compilation on a slow CPU
        pytest.skip("passed, but took over 60 s")


# ------------------------------------------------------------------------------------------ the run directory's lock


def test_the_run_directory_is_locked_while_it_trains(tmp_path, monkeypatch):
    from cellnas.runs import run_lock
    from cellnas.train import train_seeds

    held = []
    real_step = loop_mod._Training.step

    def probing_step(self):
        for d in (self.run_dir, self.run_dir.parent):
            try:
                with run_lock(d):
                    held.append((d.name, False))
            except RunError as exc:
                held.append((d.name, "in use" in str(exc)))
        real_step(self)

    monkeypatch.setattr(loop_mod._Training, "step", probing_step)
    kw = dict(TINY, epochs=1, steps_per_epoch=1, plots=False)
    train("DARTS_V2", out=tmp_path / "one", **kw)
    assert held[0] == ("one", True)
    held.clear()
    train_seeds("DARTS_V2", [0], out=tmp_path / "p", **kw)
    assert held == [("seed-0", True), ("p", True)]  # the seed's directory and the parent's
    monkeypatch.setattr(loop_mod._Training, "step", real_step)
    with run_lock(tmp_path / "p"), pytest.raises(RunError, match="in use by another cellnas process"):
        train_seeds(None, [], resume=tmp_path / "p", epochs=2)
    assert len((tmp_path / "p" / "seed-0" / "metrics.jsonl").read_text().splitlines()) == 1
