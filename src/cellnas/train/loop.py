"""Retraining a genotype from scratch with the DARTS protocol (SPEC 2.1-2.3, 5.6) in a resumable run directory.

The mirror image of :mod:`cellnas.search.loop`. Per step (quark0/darts ``train.py``): a training batch
(crop + flip + cutout), optionally mixed up (SPEC 5.6), the main loss plus ``auxiliary_weight`` times the
auxiliary head's loss, backward, gradient clipping to global norm ``grad_clip`` over all weights, an SGD step.
Per epoch e (from 0): the learning rate of :func:`~cellnas.train.setup.learning_rate_at` (constant within the
epoch) and drop-path probability p·e/E; at its end, loss and accuracy on the whole held-out test set (BN in eval
mode, no graphs), one line in ``metrics.jsonl`` and an atomic ``checkpoint.pt``.

``checkpoint.pt`` holds everything needed to continue (weights, optimiser, the loaders' positions and
generators, the drop-path and mixup generators, the global RNG states, the running sums of the epoch), so a
run resumed from any checkpoint, at the end of an epoch or mid-epoch (``checkpoint_every``), ends
bit-identical on CPU to the same run never interrupted. A checkpoint is written only when every parameter, buffer
(batch-norm statistics included) and momentum buffer is finite: a non-finite loss, gradient or state stops the run
with one line naming where, and keeps the last good checkpoint. An epoch whose mean training or test loss exceeds
:data:`ABSURD_LOSS_FACTOR` times ln(classes), the loss of a uniform guess, is warned about once (the run
is diverging while its numbers are still finite). Ctrl-C (or SIGTERM) writes a checkpoint and stops. A file that
cannot be written (a full disk) stops the run with one line naming it, the last checkpoint kept.
At the end: ``final.pt`` (weights with their constructor arguments, :mod:`cellnas.train.final`),
``summary.json`` and ``curves.png``. While a process trains in a run directory (fresh or resumed) it holds the
directory's lock (:func:`cellnas.runs.run_lock`, the file ``.lock``): a second process resuming it fails at once
naming the first, and writes nothing. Resuming a finished run (without a larger ``--epochs``) reads its summary
from its files and writes nothing, so it works in a read-only directory too; only a ``final.pt`` that cannot be
read back (a truncated copy) is written again, from the checkpoint, with a warning saying so.

A resume records its session in ``meta.json`` (``sessions``), warns when ``--epochs`` changes the schedule of the
epochs still to run, refuses a value given on the command line that a fresh run refuses (``--epochs 0``, naming
the flag) or fewer epochs than the run has run, and refuses data that differ from the data the run trained on
(the checkpoint holds a fingerprint of the images and labels, :func:`~cellnas.runs.data_fingerprint`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cellnas._config import absolute_paths
from cellnas._config import config_from as _config_from
from cellnas.errors import CellnasError, RunError
from cellnas.formats import load_genotype, save_genotype
from cellnas.genotype import Genotype
from cellnas.runs import (
    LAST_STEP_STOP,
    RunInterrupted,
    StopFlag,
    WriteFailed,
    append_metrics,
    atomic_torch_save,
    atomic_write_json,
    check_finite,
    check_same_data,
    data_fingerprint,
    is_search_config,
    load_checkpoint,
    missing_dirs,
    new_run_dir,
    non_finite_tensor,
    now_iso,
    position,
    read_json_object,
    read_metrics,
    record_session,
    restore_rng_state,
    resume_lock,
    run_lock,
    saved_config_refused,
    truncate_metrics,
    undo_start,
    write_meta,
)
from cellnas.schedule import resolve_device
from cellnas.train.config import TrainConfig, resolve_config
from cellnas.train.final import FINAL, load_final, save_final, test_metrics
from cellnas.train.mixup import mixed_cross_entropy, mixup_batch
from cellnas.train.setup import (
    DeviceOptions,
    build_model,
    check_batches,
    check_cutout,
    drop_path_at,
    learning_rate_at,
    make_train_loaders,
    network_args,
)
from cellnas.train.source import with_run_dataset

__all__ = ["train", "TrainResult", "TrainInterrupted", "RESUME_OVERRIDES", "config_from", "start",
           "check_resume_arguments", "as_dir"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
CHECKPOINT_KIND = "train"

#: Config values that may change when a run is resumed (the rest come from its checkpoint).
RESUME_OVERRIDES = ("epochs", "device", "progress", "plots", "data_dir", "checkpoint_every", "download")

#: An epoch whose mean training or test loss exceeds this many times ln(classes) (the cross-entropy of a uniform
#: guess: 2.30 for 10 classes, so 23) is warned about: no training that is going well gets there, while a diverging
#: one passes it long before its numbers overflow.
ABSURD_LOSS_FACTOR = 10.0


class TrainInterrupted(RunInterrupted):
    """Raised after Ctrl-C once the checkpoint is safely written."""


@dataclass
class TrainResult:
    """What :func:`train` returns. Errors are fractions (0.0278 = 2.78 %). ``best_epoch`` counts from 0, as the
    ``epoch`` of ``metrics.jsonl`` does (``metrics[best_epoch]`` is the best epoch's record), in ``summary.json``
    too; the printed summary counts from 1, as the progress lines do."""

    run_dir: Path
    genotype: Genotype
    metrics: list[dict]
    params: int
    best_test_error: float
    best_epoch: int
    last_test_error: float
    seconds: float
    config: TrainConfig = field(repr=False, default=None)

    @property
    def final_path(self) -> Path:
        return self.run_dir / FINAL

    def summary(self) -> dict:
        """The content of the run's ``summary.json``."""
        last = self.metrics[-1] if self.metrics else {}
        return {
            "run_dir": str(self.run_dir),
            "genotype_hash": self.genotype.content_hash(),
            "dataset": self.config.dataset if self.config else None,
            "seed": self.config.seed if self.config else None,
            "epochs": len(self.metrics),
            "params": self.params,
            "best_test_error": self.best_test_error,
            "best_epoch": self.best_epoch,
            "last_test_error": self.last_test_error,
            "last_test_loss": last.get("test_loss"),
            "train_seconds": last.get("time_s"),
            "seconds": self.seconds,
        }


def _child_seed(seed: int, index: int) -> int:
    """A seed for stream ``index`` of a run, independent of the loaders' streams 0 and 1."""
    return int(np.random.SeedSequence(int(seed)).spawn(index + 1)[index].generate_state(1, np.uint64)[0] >> 1)


class _Training:
    """One training run: built fresh from a genotype and config, or restored from a checkpoint."""

    def __init__(self, genotype: Genotype, cfg: TrainConfig, run_dir: Path, resuming: bool = False) -> None:
        from cellnas.counting import count_params
        from cellnas.data import get_dataset

        self.genotype, self.cfg, self.run_dir = genotype, cfg, run_dir
        self.device = resolve_device(cfg.device)
        self.dataset = get_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
                                   image_size=cfg.image_size)  # fmt: skip
        check_batches(cfg, self.dataset)
        check_cutout(cfg, self.dataset, refuse=not resuming)  # a run started before the check may still finish
        self.options = DeviceOptions(cfg, self.device)
        self.model = build_model(genotype, cfg, self.dataset)
        self.network = network_args(cfg, self.dataset)
        self.params = count_params(self.model, exclude_aux=True)
        self.forward = self.options.prepare(self.model)
        self.train_loader, self.test_loader = make_train_loaders(cfg, self.dataset, self.device,
                                                                 self.options.channels_last)  # fmt: skip
        self.steps_per_epoch = min(len(self.train_loader), cfg.steps_per_epoch or len(self.train_loader))
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.mixup_generator = torch.Generator().manual_seed(_child_seed(cfg.seed, 2))
        self.drop_generator = self.model._drop_generator(next(self.model.parameters()).device)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.acc = self._fresh_accumulators()
        self.best = {"test_error": None, "epoch": None}
        self.elapsed = 0.0
        self.epoch_start_elapsed = 0.0  # self.elapsed when the current epoch began (carried through checkpoints)
        self.data_fingerprint = data_fingerprint(self.dataset)
        self.saved_position: str | None = None  # where the last good checkpoint of this session stands
        self.warned_loss = False

    # -- state ------------------------------------------------------------------------------------
    @staticmethod
    def _fresh_accumulators() -> dict:
        return {"loss": 0.0, "aux_loss": 0.0, "correct": 0.0, "n": 0, "steps": 0}

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "version": CHECKPOINT_VERSION,
            "kind": CHECKPOINT_KIND,
            "config": self.cfg.to_dict(),
            "genotype": self.genotype.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "test_loader": self.test_loader.state_dict(),
            "drop_path_generator": self.drop_generator.get_state(),
            "mixup_generator": self.mixup_generator.get_state(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "accumulators": dict(self.acc),
            "best": dict(self.best),
            "elapsed": self.elapsed,
            "epoch_start_elapsed": self.epoch_start_elapsed,
            "data_fingerprint": self.data_fingerprint,
            "rng": rng,
        }

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.train_loader.load_state_dict(s["train_loader"])
        self.test_loader.load_state_dict(s["test_loader"])
        self.mixup_generator.set_state(s["mixup_generator"])
        try:
            self.drop_generator.set_state(s["drop_path_generator"])
        except RuntimeError:  # the state of a CUDA generator does not fit a CPU one (and vice versa)
            log.warning("the checkpoint's drop-path generator is from another device type; drop-path masks "
                        "will differ from an uninterrupted run")  # fmt: skip
        self.epoch, self.step_in_epoch, self.global_step = s["epoch"], s["step_in_epoch"], s["global_step"]
        self.acc, self.best, self.elapsed = dict(s["accumulators"]), dict(s["best"]), s["elapsed"]
        # a checkpoint from before the epoch's start was recorded: the epoch's time counts from the resume
        self.epoch_start_elapsed = s.get("epoch_start_elapsed", s["elapsed"])
        self.saved_position = self.position()
        restore_rng_state(s["rng"], self.device)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` atomically, once :meth:`check_state` has found every number finite."""
        self.check_state()
        path = atomic_torch_save(self.state_dict(), self.run_dir / CHECKPOINT)
        self.saved_position = self.position()
        return path

    def check_state(self) -> None:
        """Stop as diverged, keeping the last good checkpoint, when a parameter, a buffer (batch-norm running
        statistics) or a momentum buffer holds a NaN or an infinity: a checkpoint of such a state is not good."""
        bad = non_finite_tensor(self.model.state_dict())
        if bad is not None:
            kind = "a buffer" if bad in dict(self.model.named_buffers()) else "a parameter"
            raise self._diverged(f"non-finite {bad} ({kind})")
        momenta = {f"momentum of parameter {i}": st.get("momentum_buffer")
                   for i, st in self.optimizer.state_dict()["state"].items()}  # fmt: skip
        bad = non_finite_tensor(momenta)
        if bad is not None:
            raise self._diverged(f"non-finite {bad} (SGD state)")

    def _diverged(self, what: str) -> RunError:
        kept = f" ({self.saved_position})" if self.saved_position else ""
        return RunError(f"{what} at epoch {self.epoch + 1} step {self.step_in_epoch}: the run diverged and stops; "
                        f"the last good checkpoint{kept} is kept in {self.run_dir / CHECKPOINT} (start again with a "
                        "lower --lr or --grad-clip)")  # fmt: skip

    def _warn_if_absurd(self, record: dict) -> None:
        """Warn once per session when the epoch's mean loss is beyond any sane training (:data:`ABSURD_LOSS_FACTOR`)."""
        limit = ABSURD_LOSS_FACTOR * math.log(max(self.dataset.num_classes, 2))
        worst = max(record["train_loss"], record["test_loss"])
        if self.warned_loss or worst <= limit:
            return
        self.warned_loss = True
        log.warning(
            "epoch %d: training loss %.4g, test loss %.4g; over %g x ln(%d classes) = %.3g, %g times the loss of a "
            "uniform guess: the run is diverging (a lower --lr or --grad-clip may help); it goes on while its "
            "numbers are finite", self.epoch + 1, record["train_loss"], record["test_loss"], ABSURD_LOSS_FACTOR,
            self.dataset.num_classes, limit, ABSURD_LOSS_FACTOR,
        )  # fmt: skip

    # -- one step -------------------------------------------------------------------------------------
    def _check(self, value: torch.Tensor, what: str) -> None:
        # counted from 1, as the progress lines count: the step that is running
        check_finite(value, what, epoch=self.epoch + 1, step=self.step_in_epoch + 1,
                     checkpoint=self.run_dir / CHECKPOINT,
                     hint="start again with a lower --lr or --grad-clip")  # fmt: skip

    def step(self) -> None:
        cfg = self.cfg
        x, y = self.train_loader.next()
        y_b, lam = None, 1.0
        if cfg.mixup > 0:
            x, y, y_b, lam = mixup_batch(x, y, cfg.mixup, self.mixup_generator)
        self.model.train()
        with self.options.autocast():
            logits, logits_aux = self.forward(x)
        loss = mixed_cross_entropy(logits, y, y_b, lam, cfg.label_smoothing)
        self._check(loss.detach(), "training loss")
        total = loss
        aux_loss = None
        if logits_aux is not None and cfg.auxiliary_weight > 0:
            aux_loss = mixed_cross_entropy(logits_aux, y, y_b, lam, cfg.label_smoothing)
            total = loss + cfg.auxiliary_weight * aux_loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self._check(grad_norm.detach(), "gradient norm")
        self.optimizer.step()
        n = y.numel()
        pred = logits.detach().argmax(1)
        correct = float((pred == y).sum())
        if y_b is not None:
            correct = lam * correct + (1.0 - lam) * float((pred == y_b).sum())
        self.acc["loss"] += float(loss.detach()) * n
        self.acc["aux_loss"] += float(aux_loss.detach()) * n if aux_loss is not None else 0.0
        self.acc["correct"] += correct
        self.acc["n"] += n
        self.acc["steps"] += 1

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> None:
        cfg = self.cfg
        bar = _progress(cfg, self.epoch * self.steps_per_epoch + self.step_in_epoch, self.steps_per_epoch)
        with _redirect_logging(bar):
            try:
                while self.epoch < cfg.epochs:
                    self._run_epoch(stop, bar)
                    if stop.requested and self.epoch < cfg.epochs:
                        raise self._interrupted()
                if stop.requested:
                    log.warning(LAST_STEP_STOP)
            finally:
                if bar is not None:
                    bar.close()

    def position(self) -> str:
        """How far the run got (:func:`cellnas.runs.position`)."""
        return position(self.epoch, self.step_in_epoch, self.steps_per_epoch, self.cfg.epochs)

    def _interrupted(self) -> TrainInterrupted:
        return TrainInterrupted(
            f"interrupted {self.position()}; checkpoint written, continue with: cellnas train --resume {self.run_dir}"
        )

    def _run_epoch(self, stop: StopFlag, bar) -> None:
        cfg = self.cfg
        lr = learning_rate_at(cfg, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.drop_path_prob = drop_path_at(cfg.drop_path, self.epoch, cfg.epochs)
        t0 = time.perf_counter()
        if self.step_in_epoch == 0:
            self.epoch_start_elapsed = self.elapsed
        if bar is not None:
            bar.set_description(f"epoch {self.epoch + 1}/{cfg.epochs}", refresh=False)
        while self.step_in_epoch < self.steps_per_epoch:
            self.step()
            self.step_in_epoch += 1
            self.global_step += 1
            if bar is not None:
                a = self.acc
                bar.set_postfix(loss=f"{a['loss'] / a['n']:.3f}", acc=f"{a['correct'] / a['n']:.3f}", refresh=False)
                bar.update(1)
            mid_epoch = self.step_in_epoch < self.steps_per_epoch
            due = bool(cfg.checkpoint_every) and self.global_step % cfg.checkpoint_every == 0
            if mid_epoch and (stop.requested or due):
                self.elapsed += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_checkpoint()
                if stop.requested:
                    raise self._interrupted()
        self.check_state()  # before anything of this epoch is recorded
        # the plain module: the compiled one is for training steps only (DeviceOptions)
        test_loss, test_acc = test_metrics(self.model, self.model, self.test_loader, self.options.autocast)
        if not math.isfinite(test_loss):
            raise self._diverged("non-finite test loss")
        self.elapsed += time.perf_counter() - t0
        a = self.acc
        test_error = 1.0 - test_acc
        if self.best["test_error"] is None or test_error < self.best["test_error"]:
            self.best = {"test_error": test_error, "epoch": self.epoch}
        record = {
            "epoch": self.epoch,
            "lr": lr,
            "drop_path_prob": self.model.drop_path_prob,
            "train_loss": a["loss"] / a["n"],
            "train_acc": a["correct"] / a["n"],
            "test_loss": test_loss,
            "test_acc": test_acc,
            "test_error": test_error,
            "best_test_error": self.best["test_error"],
            "best_epoch": self.best["epoch"],
            "steps": a["steps"],
            "epoch_time_s": self.elapsed - self.epoch_start_elapsed,
            "time_s": self.elapsed,
        }
        if self.model.auxiliary and cfg.auxiliary_weight > 0:
            record["train_aux_loss"] = a["aux_loss"] / a["n"]
        log.info(
            "epoch %d/%d  lr %.4g  drop-path %.3f  train loss %.4f acc %.4f  test loss %.4f acc %.4f  (%.1fs)",
            self.epoch + 1, cfg.epochs, lr, record["drop_path_prob"], record["train_loss"], record["train_acc"],
            test_loss, test_acc, record["epoch_time_s"],
        )  # fmt: skip
        self._warn_if_absurd(record)
        append_metrics(self.run_dir, record)
        self.epoch += 1
        self.step_in_epoch = 0
        self.acc = self._fresh_accumulators()
        self.save_checkpoint()


def _progress(cfg: TrainConfig, initial: int, steps_per_epoch: int):
    """One bar over the whole run, so that its ETA is the run's; none when stderr is not a terminal (a pipe, a log
    file), where the bar's redrawn lines would only clutter the output."""
    if not cfg.progress or not _is_terminal(sys.stderr):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.epochs * steps_per_epoch, initial=initial, unit="step", leave=False, dynamic_ncols=True)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _redirect_logging(bar):
    """Send log lines through ``tqdm.write`` while the bar is shown, so they do not break it."""
    if bar is None:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _check_checkpoint_belongs(run_dir: Path, state: dict, genotype: Genotype) -> None:
    """Refuse a ``checkpoint.pt`` whose genotype or config is not the run directory's (a file copied in from
    another run would otherwise continue there and mix two runs in one ``metrics.jsonl``)."""
    problems = []
    g_file = run_dir / "genotype.json"
    if g_file.is_file() and load_genotype(g_file) != genotype:
        problems.append("its genotype differs from genotype.json")
    c_file = run_dir / "config.json"
    if c_file.is_file():
        try:
            on_disk = json.loads(c_file.read_text())
        except (OSError, ValueError):
            on_disk = None
        if isinstance(on_disk, dict):
            differ = sorted(k for k, v in state["config"].items()
                            if k not in RESUME_OVERRIDES and k in on_disk and on_disk[k] != _jsonable(v))  # fmt: skip
            if differ:
                problems.append(f"its config differs from config.json in {', '.join(differ)}")
    if problems:
        raise CellnasError(f"the checkpoint in {run_dir} does not belong to this run: {'; '.join(problems)}. "
                           "Resume the run it came from, or start a new one")  # fmt: skip


def _jsonable(value):
    """A config value as it reads back from config.json (tuples become lists)."""
    return json.loads(json.dumps(value))


def _check_resume_request(run_dir: Path, state: dict, genotype, overrides: dict) -> Genotype:
    """Refuse overrides that a resume cannot take and a genotype other than the run's; return the run's genotype."""
    refused = sorted(k for k, v in overrides.items() if v is not None and k not in RESUME_OVERRIDES)
    if refused:
        raise CellnasError(
            f"--resume continues {run_dir} with its own config; {', '.join(refused)} cannot be changed "
            f"(only {', '.join(RESUME_OVERRIDES)})"
        )
    saved = Genotype.from_dict(state["genotype"])
    if genotype is not None and load_genotype(genotype) != saved:
        raise CellnasError(f"the genotype given differs from the one {run_dir} was trained with; omit it to resume")
    return saved


def _resume(run_dir: Path, genotype, overrides: dict) -> _Training:
    state = load_checkpoint(run_dir, kind=CHECKPOINT_KIND, version=CHECKPOINT_VERSION)
    saved = _check_resume_request(run_dir, state, genotype, overrides)
    _check_checkpoint_belongs(run_dir, state, saved)
    before = TrainConfig.from_dict(state["config"])
    cfg = resume_config(run_dir, state, overrides)
    started = _check_epochs(run_dir, state, cfg)
    job = _Training(saved, cfg, run_dir, resuming=True)
    job.load_state_dict(state)
    check_same_data(run_dir, state.get("data_fingerprint"), job.data_fingerprint, job.cfg.dataset, before.data_dir,
                    job.cfg.data_dir)  # fmt: skip
    if cfg.epochs != before.epochs:
        _say_new_epochs(run_dir, before, cfg, state["epoch"], started)
    truncate_metrics(run_dir, job.epoch)
    atomic_write_json(run_dir / "config.json", cfg.to_dict())  # --epochs and the other overrides, as they now run
    where = {"epoch": job.epoch, "step_in_epoch": job.step_in_epoch, "position": job.position()}
    record_session(run_dir, str(job.device), where)
    log.info("resuming %s %s", run_dir, job.position())
    return job


def resume_config(run_dir: Path, state: dict, overrides: dict, *, finished: bool = False) -> TrainConfig:
    """The config a resume of ``run_dir`` goes on with: its checkpoint's, with the :data:`RESUME_OVERRIDES` given
    (as ``cellnas search --resume`` does it). A value refused is blamed on the command line (``cannot resume DIR:
    --epochs must be >= 1, got 0``), or on the saved config when it is refused alone: an earlier cellnas may have
    started the run with a value that is checked now. ``finished``: reading a finished run's result, which refuses
    only what the command line adds (its saved config is then returned as it is)."""
    cfg = TrainConfig.from_dict(state["config"])
    for key, value in absolute_paths(overrides).items():
        if key in RESUME_OVERRIDES and value is not None:
            setattr(cfg, key, value)
    try:
        cfg.validate()
    except CellnasError as exc:
        saved = TrainConfig.from_dict(state["config"])
        try:
            saved.validate()
        except CellnasError as old:  # a value an earlier cellnas accepted and this one checks
            if finished:
                return TrainConfig.from_dict(state["config"])
            raise saved_config_refused(run_dir, old) from None
        raise CellnasError(f"cannot resume {run_dir}: {exc}") from None  # the command line's value is to blame
    return cfg


def _check_epochs(run_dir: Path, state: dict, cfg: TrainConfig) -> int:
    """Refuse an ``--epochs`` below the epochs the run has already run or started (as ``cellnas search --resume``
    refuses it); return that count."""
    started = state["epoch"] + (1 if state["step_in_epoch"] else 0)
    if cfg.epochs < started:
        raise CellnasError(f"--epochs {cfg.epochs} is fewer than the {started} epochs {run_dir} has already run "
                           f"(or started); give {started} or more to extend it")  # fmt: skip
    return started


def _say_new_epochs(run_dir: Path, before: TrainConfig, cfg: TrainConfig, done: int, started: int) -> None:
    """Warn what a new --epochs does to the epochs still to run: the cosine learning rate and the drop-path ramp
    are functions of the epoch count (:func:`~cellnas.train.setup.learning_rate_at`, SPEC 2.1, 2.2)."""
    head = f"--epochs {cfg.epochs} changes {run_dir} from {before.epochs} to {cfg.epochs} epochs (config.json now "
    head += f"says {cfg.epochs})"
    if started == 0:
        log.info("%s; no epoch has run yet, so the run is the same as one started with --epochs %d", head, cfg.epochs)
        return
    changes = []
    if cfg.lr_schedule == "cosine":
        was = (f"the {before.epochs}-epoch schedule ended at {learning_rate_at(before, before.epochs - 1):.4g}"
               if done >= before.epochs else f"instead of {learning_rate_at(before, done):.4g}")  # fmt: skip
        changes.append(f"the cosine learning rate is recomputed over {cfg.epochs} epochs: epoch {done + 1} runs at "
                       f"{learning_rate_at(cfg, done):.4g} ({was})")  # fmt: skip
    if cfg.drop_path > 0:
        last = before.epochs - 1
        was = (f"the {before.epochs}-epoch ramp ended at {drop_path_at(before.drop_path, last, before.epochs):.3f}"
               if done >= before.epochs else f"instead of {drop_path_at(before.drop_path, done, before.epochs):.3f}")
        now = drop_path_at(cfg.drop_path, done, cfg.epochs)
        changes.append(f"drop-path now ramps to {cfg.drop_path:g} over {cfg.epochs} epochs: epoch {done + 1} drops "
                       f"paths with probability {now:.3f} ({was})")  # fmt: skip
    if not changes:  # a step schedule without drop-path: the epochs to come are as they would have been
        log.info("%s", head)
        return
    log.warning("%s: %s; the epochs already run followed the %d-epoch schedule, so the result differs from a run "
                "started with --epochs %d", head, "; ".join(changes), before.epochs, cfg.epochs)  # fmt: skip


def _finished_result(run_dir: Path, genotype, overrides: dict) -> TrainResult | None:
    """The result of a finished run read from its files, writing nothing; ``None`` when the run is not finished
    (no ``final.pt`` or ``summary.json`` yet, or a larger ``--epochs`` extends it) or its ``final.pt`` cannot be
    read (the resume then writes it again from the checkpoint, saying so). Values on the command line are checked as
    a resume checks them (``--epochs 0``, fewer epochs than the run has run: refused)."""
    state = load_checkpoint(run_dir, kind=CHECKPOINT_KIND, version=CHECKPOINT_VERSION)
    saved = _check_resume_request(run_dir, state, genotype, overrides)
    cfg = TrainConfig.from_dict(state["config"])
    _check_epochs(run_dir, state, resume_config(run_dir, state, overrides, finished=True))
    epochs = overrides.get("epochs") or cfg.epochs
    summary = read_json_object(run_dir / "summary.json")
    metrics = read_metrics(run_dir)
    finished = state["epoch"] == epochs == cfg.epochs and not state["step_in_epoch"] and (run_dir / FINAL).is_file()
    if not finished or summary is None or len(metrics) < state["epoch"] or not isinstance(summary.get("params"), int):
        return None
    damaged = _final_damaged(run_dir)
    if damaged is not None:
        log.warning("%s; writing it again from %s (the run has finished: nothing is trained)", damaged,
                    run_dir / CHECKPOINT)  # fmt: skip
        return None
    log.info("%s has finished its %d epochs: its summary, read from its files (--epochs N to extend it)", run_dir,
             state["epoch"])  # fmt: skip
    metrics = metrics[: state["epoch"]]
    seconds = summary.get("seconds")
    return TrainResult(
        run_dir=run_dir, genotype=saved, metrics=metrics, params=summary["params"],
        best_test_error=state["best"]["test_error"], best_epoch=state["best"]["epoch"],
        last_test_error=metrics[-1]["test_error"], seconds=seconds if isinstance(seconds, (int, float)) else 0.0,
        config=cfg,
    )  # fmt: skip


def _final_damaged(run_dir: Path) -> str | None:
    """Why the ``final.pt`` of the finished run ``run_dir`` cannot be read back (a truncated or damaged file: what
    ``cellnas evaluate`` would say), or ``None`` when it rebuilds its network. Reads, writes nothing."""
    try:
        load_final(run_dir / FINAL, hint=False)
    except RunError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a file with the marker but parts missing or of the wrong shape
        return f"cannot read {run_dir / FINAL}: a damaged cellnas final.pt ({type(exc).__name__})"
    return None


def train(
    genotype: Genotype | str | None = None,
    config: TrainConfig | Mapping | None = None,
    *,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    preset: str | None = None,
    **overrides,
) -> TrainResult:
    """Train ``genotype`` from scratch (or resume a run) with a standard protocol; return a :class:`TrainResult`.

    ``genotype``: a :class:`~cellnas.genotype.Genotype` or anything :func:`~cellnas.formats.load_genotype`
    accepts (zoo name, file, run directory, DARTS text); optional with ``resume``. A ``cellnas search`` run
    directory is warned about when its search did not finish, and without ``config``, ``preset`` or a ``dataset``
    override its dataset (and data_dir) is used (:mod:`cellnas.train.source`).

    The config (SPEC 2.2, 2.3, 5.6), resolved as :func:`config_from` does it:

    * ``config``: a :class:`~cellnas.train.config.TrainConfig`, used as it is with ``overrides`` applied (no
      ``preset`` with it); or a dict of its keys, read as ``cellnas train --config FILE`` reads a file: applied over
      ``preset`` (or the preset the dict names, or the dataset's), then ``overrides``;
    * else ``preset`` (or the dataset's, :data:`~cellnas.train.config.DATASET_PRESETS`) with ``overrides``;
    * ``overrides``: config keys as keywords (``epochs=1, channels=4``; ``data_dir`` may be a path); ``None``
      values mean "not given".

    The caller's config is never changed: the run works on a copy, which is ``result.config`` (each result owns
    its own, so one config object can be reused across a sweep).

    ``out``: the run directory (refused when not empty; default ``runs/train-<time>``). ``resume``: a run
    directory to continue, with its own config: only the keys in :data:`RESUME_OVERRIDES` (``epochs`` to extend
    the run, ``device``, ``data_dir``, ...) may be given, as keywords; ``config``, ``preset``, another ``out`` and
    other keys are refused. Resuming a finished run (without a larger ``epochs``) returns its result, read from
    its files.

    Returns a :class:`TrainResult` (the run directory, per-epoch metrics, test errors as fractions, the config the
    run used); the run directory holds ``final.pt``, ``summary.json``, ``metrics.jsonl`` and ``config.json``.

    Raises :class:`~cellnas.errors.CellnasError` (its subclasses included) for anything the caller can fix: an
    unknown preset or config key, a value out of range or of the wrong type, a config that is not a training
    config, an argument a resume cannot take, missing data, a run directory that cannot be used;
    :class:`TrainInterrupted` after Ctrl-C (or SIGTERM), once the checkpoint is written.

    >>> result = train("DARTS_V2", dataset="digits", epochs=1, channels=4, layers=3, progress=False)  # doctest: +SKIP
    >>> result.last_test_error, result.run_dir  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    if resume is not None:
        run_dir = as_dir(resume, "resume")
        check_resume_arguments(run_dir, config, preset, out)
        done = _finished_result(run_dir, genotype, overrides) if (run_dir / CHECKPOINT).is_file() else None
        if done is not None:  # nothing to train or write: no lock either (a read-only copy of a run reads as well)
            return done
        with resume_lock(run_dir, CHECKPOINT):
            return _train(_resume(run_dir, genotype, overrides), t_start)
    if genotype is None:
        raise CellnasError("train needs a genotype (a zoo name such as DARTS_V2, a file or a run directory)")
    out = None if out is None else as_dir(out, "out")
    new_dirs = missing_dirs(out)
    g, cfg, run_dir = start(genotype, config, preset, overrides, out)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(run_lock(run_dir))
        except WriteFailed as exc:  # the lock file could not be written (a full disk): nothing else is there
            undo_start(run_dir, new_dirs, fresh=out is None or run_dir in new_dirs)
            raise _not_started(exc, run_dir) from None
        try:
            job = _Training(g, cfg, run_dir)
            atomic_write_json(run_dir / "config.json", cfg.to_dict())
            save_genotype(g, run_dir / "genotype.json")
            extra = {"kind": "train", "genotype_hash": g.content_hash(), "params": job.params,
                     "precision": job.options.describe()}  # fmt: skip
            write_meta(run_dir, str(job.device), extra)
            job.save_checkpoint()
        except BaseException as exc:
            # nothing to resume from yet: leave no half-written directory behind (it was empty when this process
            # took its lock, so every file in it is this start's); a directory the user made before is kept
            undo_start(run_dir, new_dirs, _START_FILES, fresh=out is None or run_dir in new_dirs)
            if isinstance(exc, WriteFailed):
                raise _not_started(exc, run_dir) from None
            raise
        return _train(job, t_start)


def as_dir(value: str | os.PathLike, name: str) -> Path:
    """``value`` (the ``name`` argument: ``out``, ``resume``) as a :class:`Path`, or a :class:`CellnasError` saying
    what it takes (instead of :class:`Path`'s TypeError)."""
    if not isinstance(value, (str, os.PathLike)):
        raise CellnasError(f"{name} must be a directory (a string or os.PathLike such as a pathlib.Path), got "
                           f"{value!r} ({type(value).__name__})")  # fmt: skip
    return Path(value)


def check_resume_arguments(run_dir: Path, config, preset: str | None, out) -> None:
    """Refuse what a resume of ``run_dir`` would otherwise drop without a word: a ``config`` or ``preset`` (the run
    goes on with its own config, the keys of :data:`RESUME_OVERRIDES` aside) and an ``out`` other than
    ``run_dir`` (it goes on in its own directory)."""
    given = [name for name, value in (("config", config), ("preset", preset)) if value is not None]
    if given:
        raise CellnasError(
            f"--resume continues {run_dir} with its own config; {' and '.join(given)} cannot be given (only "
            f"{', '.join(RESUME_OVERRIDES)} can change, as keywords such as epochs=N to extend the run)"
        )
    if out is not None and as_dir(out, "out").resolve() != run_dir.resolve():
        raise CellnasError(f"--resume continues in the run's own directory {run_dir}; drop out={str(out)!r}")


def _not_started(exc: WriteFailed, run_dir: Path) -> RunError:
    removed = "" if run_dir.exists() else f" (the run directory {run_dir} is removed)"
    return RunError(f"cannot write {exc.path}: {exc.reason}; the run had not started, nothing is kept{removed}")


def _train(job: _Training, t_start: float) -> TrainResult:
    """Run ``job`` to its last epoch and write the final files (with the run directory locked)."""
    run_dir = job.run_dir
    log.info("training %s on %s: %s, %d parameters, %s, run directory %s", job.network["kind"], job.dataset.name,
             f"C={job.cfg.channels} {job.cfg.layers} cells", job.params, job.options.describe(), run_dir)  # fmt: skip
    stop = StopFlag()
    try:
        with stop.installed():
            try:
                job.run(stop)
            except KeyboardInterrupt:
                raise TrainInterrupted(
                    f"aborted; the last checkpoint in {run_dir} is kept (continue with --resume {run_dir})"
                ) from None
        return _finish(job, time.perf_counter() - t_start)
    except WriteFailed as exc:
        raise _write_failed(job, exc) from None


#: The files a fresh run writes before its first checkpoint (removed again when that checkpoint cannot be written).
_START_FILES = ("config.json", "genotype.json", "meta.json")


def _write_failed(job: _Training, exc: WriteFailed) -> RunError:
    """One line for a file that could not be written during a run: which, why, what is kept and how to go on."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free some space" if full else "make the directory writable"
    return RunError(f"cannot write {exc.path}: {exc.reason}; the last checkpoint ({job.saved_position}) is kept in "
                    f"{job.run_dir / CHECKPOINT}: {fix}, then continue with: cellnas train --resume {job.run_dir}")


def start(
    genotype, config: TrainConfig | Mapping | None, preset: str | None, overrides: dict, out: str | Path | None
) -> tuple[Genotype, TrainConfig, Path]:
    """What a fresh run starts from: the genotype, the config (:func:`config_from`; a search or training run
    directory's dataset when none was chosen, :func:`~cellnas.train.source.with_run_dataset`) and a new run
    directory."""
    g = load_genotype(genotype)
    chosen = config is not None or preset is not None or overrides.get("dataset") is not None
    cfg = config_from(config, preset, with_run_dataset(genotype, overrides, chosen=chosen))
    return g, cfg, new_run_dir(out, "train")


def config_from(config: TrainConfig | Mapping | None, preset: str | None, overrides: dict) -> TrainConfig:
    """The validated config of a run (see :func:`train`), always a new object: a :class:`TrainConfig` (a copy, with
    ``overrides`` on top), a dict of its keys (as a ``--config`` file, over ``preset``) or ``None`` (``preset`` and
    ``overrides``); the rules are :func:`cellnas._config.config_from`'s, shared with the search."""
    _check_config_type(config)
    return _config_from(TrainConfig, resolve_config, config, preset, overrides)


def _check_config_type(config) -> None:
    """Refuse a ``config`` that is not ``None``, a :class:`TrainConfig` or a dict of its keys (a search config, as an
    object or a dict, a file name, ...), naming what it is and what is taken instead."""
    if config is None or isinstance(config, TrainConfig):
        return
    if isinstance(config, Mapping):
        if is_search_config(config):
            raise CellnasError("config is a search config (the keys of a `cellnas search` config.json), not a training "
                               "one; give a TrainConfig, a dict of its keys, or none (a preset and keywords)")
        return
    from cellnas.search.config import SearchConfig

    if isinstance(config, SearchConfig):
        raise CellnasError("config is a search config (SearchConfig), not a training one; give a TrainConfig (e.g. "
                           "cellnas.train.resolve_config(preset, {...})), a dict of its keys, or none (a preset and "
                           "keywords)")  # fmt: skip
    hint = " (to read a config file: json.load it and pass the dict)" if isinstance(config, (str, os.PathLike)) else ""
    raise CellnasError(f"config must be a TrainConfig, a dict of its keys or None, got {config!r} "
                       f"({type(config).__name__}){hint}")  # fmt: skip


def _finish(job: _Training, seconds: float) -> TrainResult:
    """Final files: final.pt, summary.json, meta end time, curves.png."""
    run_dir = job.run_dir
    metrics = read_metrics(run_dir)
    last = metrics[-1]
    save_final(run_dir / FINAL, job.model, job.genotype, job.network, job.dataset, job.cfg.to_dict(),
               {k: last[k] for k in ("epoch", "test_loss", "test_acc", "test_error")})  # fmt: skip
    result = TrainResult(
        run_dir=run_dir, genotype=job.genotype, metrics=metrics, params=job.params,
        best_test_error=job.best["test_error"], best_epoch=job.best["epoch"], last_test_error=last["test_error"],
        seconds=seconds, config=job.cfg,
    )  # fmt: skip
    atomic_write_json(run_dir / "summary.json", result.summary())
    meta_path = run_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    meta["end_time"] = now_iso()
    meta["train_seconds"] = job.elapsed
    atomic_write_json(meta_path, meta)
    if not job.cfg.plots:
        return result
    try:
        from cellnas.plots.train import plot_train_run

        plot_train_run(run_dir)
    except Exception as exc:  # noqa: BLE001 - a plotting failure must not lose a finished run
        log.warning("could not draw the plots of %s: %s", run_dir, exc)
    return result
