"""The DARTS search loop (Liu et al., ICLR 2019, Alg. 1; SPEC 1.5) with self-describing, resumable runs.

Three modes: ``bilevel`` (DARTS), ``single-level`` (α and w on one training batch) and ``dsnas`` (one sampled
child per step, Hu et al. CVPR 2020: :mod:`cellnas.search.dsnas`).

Per step, in quark0's order: an architecture step on a search ("validation") batch, then an
SGD step on a training batch (gradient clipping on the weights only). The weight learning
rate follows SPEC 1.5's formula, constant within an epoch:
lr_e = lr_min + (lr - lr_min)(1 + cos(π e / E)) / 2.

Everything needed to continue is in ``checkpoint.pt`` (weights and α, both optimisers, the
loaders' positions and generators, RNG states, histories), written atomically at the end of
every epoch (and every ``checkpoint_every`` steps). A run killed at any moment and resumed
ends bit-identical, on CPU, to the same run never interrupted. Resuming a finished search (without a larger
``epochs``) reads its result from its files and writes nothing, so it works in a read-only directory too. A start
that fails before its first checkpoint takes back the directories it made (:func:`~cellnas.runs.undo_start`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cellnas.errors import CellnasError, RunError
from cellnas.formats import save_genotype
from cellnas.genotype import Genotype
from cellnas.runs import (
    LAST_STEP_STOP,
    Diverged,
    RunInterrupted,
    StopFlag,
    WriteFailed,
    append_metrics,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    check_finite,
    check_same_data,
    data_fingerprint,
    load_checkpoint,
    lock_holder,
    missing_dirs,
    new_run_dir,
    non_finite_tensor,
    now_iso,
    position,
    read_json_object,
    read_metrics,
    record_session,
    record_stop,
    restore_rng_state,
    resume_lock,
    rng_state,
    run_lock,
    saved_config_refused,
    truncate_metrics,
    undo_start,
    write_meta,
)
from cellnas.schedule import amp_dtype, autocast, cosine_lr, resolve_device
from cellnas.search.architect import Architect
from cellnas.search.config import SearchConfig, check_config_type, config_from, resolve_config

__all__ = ["search", "SearchResult"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1


class SearchInterrupted(RunInterrupted):
    """Raised after Ctrl-C once the checkpoint is safely written."""


@dataclass
class SearchResult:
    """What :func:`search` returns: the searched cell, where the run's files are, and how it went.

    - ``genotype``: the discrete cell derived from the final α (SPEC 1.7), as ``genotype.json`` holds it.
    - ``run_dir``: the run directory (``config.json``, ``meta.json``, ``metrics.jsonl``, ``alphas.npz``,
      ``alphas_history.npz``, ``genotype.json``, ``checkpoint.pt``, plots).
    - ``metrics``: one record per epoch, as ``metrics.jsonl`` holds them (losses, accuracies, learning rate, the
      epoch's genotype and softmax(α)).
    - ``alphas``: ``{"normal": P, "reduce": P}``, the final softmax(α) of each cell type (SPEC 1.7): ``P`` has shape
      ``(edges, ops)``, each row a probability distribution over the ops (it sums to 1), columns in the order of
      :attr:`ops`. The run directory's ``alphas.npz`` holds the logits α themselves, with the op names (``ops``) and,
      for PC-DARTS edge normalisation, the edge logits beta.
    - ``seconds``: the whole call, this session only (data, set-up, evaluation, checkpoints and plots included).
    - ``config``: the resolved :class:`SearchConfig` the run went on with, this search's own copy (changing it
      changes nothing else); ``None`` only for a result built by hand.
    - ``search_seconds``: the training steps alone, added up over every session of a resumed run (``meta.json``'s
      ``search_seconds``).
    - ``resumed``: whether this call continued (or read the result of) an existing run (``resume=``).
    """

    genotype: Genotype
    run_dir: Path
    metrics: list[dict]
    alphas: dict[str, np.ndarray]
    seconds: float
    config: SearchConfig = field(repr=False, default=None)
    search_seconds: float = 0.0
    resumed: bool = False

    @property
    def ops(self) -> tuple[str, ...]:
        """The op name of each column of :attr:`alphas` (the config's ``ops``; ``()`` without a config)."""
        return tuple(self.config.ops) if self.config is not None else ()

    @property
    def search_accuracy(self) -> float | None:
        """The supernet's accuracy on the search split at the last evaluation (``valid_acc``); ``None`` if none ran."""
        for rec in reversed(self.metrics):
            if rec.get("valid_acc") is not None:
                return rec["valid_acc"]
        return None


class _Search:
    """One search run: built fresh from a config, or restored from a checkpoint."""

    def __init__(self, cfg: SearchConfig, run_dir: Path) -> None:
        from cellnas.data import get_dataset
        from cellnas.search.setup import SearchLoaders, build_model

        self.cfg, self.run_dir = cfg, run_dir
        self.device = resolve_device(cfg.device)
        self.amp = amp_dtype(cfg.amp, self.device)  # None: fp32
        self.dataset = get_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download)
        self.data_fingerprint = data_fingerprint(self.dataset)  # a resume on other images is refused
        self.model = build_model(cfg, self.dataset).to(self.device)
        loaders = SearchLoaders(cfg, self.dataset, self.device)
        self.train_loader, self.valid_loader, self.eval_loader = loaders.train, loaders.valid, loaders.evaluation
        self.steps_per_epoch = min(len(self.train_loader), cfg.steps_per_epoch or len(self.train_loader))
        self.w_optimizer = torch.optim.SGD(
            self.model.weight_parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.a_optimizer = torch.optim.Adam(
            self.model.arch_parameters(), lr=cfg.arch_lr, betas=tuple(cfg.arch_betas),
            weight_decay=cfg.arch_weight_decay,
        )  # fmt: skip
        self.architect = Architect(
            self.model, self.w_optimizer, self.a_optimizer, order=cfg.order, hvp=cfg.hvp,
            momentum=cfg.momentum, weight_decay=cfg.weight_decay, eps_scale=cfg.unrolled_eps, amp=self.amp,
        )  # fmt: skip
        self.wiring = None
        if cfg.record_wiring:
            from cellnas.search.wiring import CostRecorder

            self.wiring = CostRecorder(self.model, sampled=cfg.mode == "dsnas")
        self.dsnas = None  # --mode dsnas: sampled children and the DSNAS α estimator (search.dsnas)
        if cfg.mode == "dsnas":
            from cellnas.search.dsnas import DsnasSearch

            self.dsnas = DsnasSearch(self.model, seed=cfg.seed, rest=cfg.sample_rest,
                                     reward_clip=cfg.dsnas_reward_clip, arch_clip=cfg.dsnas_arch_clip,
                                     eval_bn=cfg.dsnas_eval_bn, alpha_loss=cfg.dsnas_alpha_loss)  # fmt: skip
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.history: dict[str, list] = {"normal": [], "reduce": [], "epoch": [], "step": []}
        self.acc = self._fresh_accumulators()
        self.elapsed = 0.0

    # -- state ------------------------------------------------------------------------------------
    @staticmethod
    def _fresh_accumulators() -> dict:
        # n: training images; search_n: search images (the two splits' batches differ unless the split is even)
        return {"train_loss": 0.0, "train_correct": 0, "search_loss": 0.0, "search_correct": 0, "n": 0, "search_n": 0,
                "steps": 0}  # fmt: skip

    def state_dict(self) -> dict:
        return {
            "kind": "search",
            "version": CHECKPOINT_VERSION,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "valid_loader": self.valid_loader.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "history": self.history,
            "accumulators": self.acc,
            "elapsed": self.elapsed,
            "wiring": self.wiring.state_dict() if self.wiring else None,
            "dsnas": self.dsnas.state_dict() if self.dsnas else None,
            "rng": rng_state(self.device),
            "data_fingerprint": self.data_fingerprint,
        }

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.w_optimizer.load_state_dict(s["w_optimizer"])
        self.a_optimizer.load_state_dict(s["a_optimizer"])
        self.train_loader.load_state_dict(s["train_loader"])
        self.valid_loader.load_state_dict(s["valid_loader"])
        self.epoch, self.step_in_epoch, self.global_step = s["epoch"], s["step_in_epoch"], s["global_step"]
        self.history, self.acc, self.elapsed = s["history"], dict(s["accumulators"]), s["elapsed"]
        # a checkpoint from before the search side had its own count (resumed mid-epoch): its search sums were
        # divided by the training count, which is what they get for the rest of that epoch; exact in single-level
        # mode and at the default even split (full batches of the same size on both sides), close otherwise
        self.acc.setdefault("search_n", self.acc["n"])
        if self.cfg.edge_norm:  # a run saved before the edge weights were recorded: NaN for those records
            n_edges = self.model.arch_parameters()[2].numel()
            for name in ("normal", "reduce"):
                got = self.history.setdefault(f"edge_{name}", [])
                missing = len(self.history["step"]) - len(got)
                got[:0] = [np.full(n_edges, np.nan, dtype=np.float32)] * max(missing, 0)
        if self.wiring and s.get("wiring"):
            self.wiring.load_state_dict(s["wiring"])
        if self.dsnas and s.get("dsnas"):
            self.dsnas.load_state_dict(s["dsnas"])
        restore_rng_state(s["rng"], self.device)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` atomically, once :meth:`check_state` has found every number finite."""
        self.check_state()
        return atomic_torch_save(self.state_dict(), self.run_dir / CHECKPOINT)

    def check_state(self) -> None:
        """Stop as diverged, keeping the last good checkpoint, when a weight, α, a batch-norm running statistic, or
        an optimizer's state (SGD momentum, Adam's moments of α) holds a NaN or an infinity (the losses are checked
        every step; the rest only here, before a checkpoint is written)."""
        bad = non_finite_tensor(self.model.state_dict())
        if bad is not None:
            kind = "a buffer" if bad in dict(self.model.named_buffers()) else "a parameter"
            raise self._diverged(f"non-finite {bad} ({kind})")
        optimizers = {"SGD state of weight": self.w_optimizer, "Adam state of architecture parameter": self.a_optimizer}
        for name, opt in optimizers.items():
            # non_finite_tensor skips what is not a floating-point tensor (Adam's integer-valued step counts too)
            state = {f"{key} in the {name} {i}": value for i, st in opt.state_dict()["state"].items()
                     for key, value in st.items()}  # fmt: skip
            bad = non_finite_tensor(state)
            if bad is not None:
                raise self._diverged(f"non-finite {bad}")

    def _diverged(self, what: str) -> RunError:
        cause = f"{what} at epoch {self.epoch + 1} step {self.step_in_epoch}"
        if not (self.run_dir / CHECKPOINT).is_file():
            return Diverged(f"{cause}: the search diverged before its first checkpoint and stops; there is nothing to "
                            f"resume ({self._first_hint()})", cause)  # fmt: skip
        return Diverged(
            f"{cause}: the search diverged and stops; the last good checkpoint is kept in {self.run_dir / CHECKPOINT} "
            "(try a lower --lr or --arch-lr, or --grad-clip)", cause,
        )  # fmt: skip

    def _first_hint(self) -> str:
        """What to do after diverging before the first checkpoint: start again, lower, elsewhere."""
        return (f"lower the learning rates (--lr, --arch-lr) or set --grad-clip, then start again: the same command "
                f"with another --out, or after removing {self.run_dir}")  # fmt: skip

    # -- one step -------------------------------------------------------------------------------------
    def _check(self, value: torch.Tensor, what: str) -> None:
        # counted from 1, as the progress lines count: the step that is running
        check_finite(value, what, epoch=self.epoch + 1, step=self.step_in_epoch + 1,
                     checkpoint=self.run_dir / CHECKPOINT, hint="try a lower --lr or --arch-lr, or --grad-clip",
                     first_hint=self._first_hint())  # fmt: skip

    def position(self) -> str:
        """How far the run got (:func:`cellnas.runs.position`)."""
        return position(self.epoch, self.step_in_epoch, self.steps_per_epoch, self.cfg.epochs)

    def _interrupted(self) -> SearchInterrupted:
        return SearchInterrupted(
            f"interrupted {self.position()}; checkpoint written, continue with: cellnas search --resume {self.run_dir}"
        )

    def step(self, lr: float) -> None:
        cfg, model = self.cfg, self.model
        x_t, y_t = self.train_loader.next()
        model.train()
        if cfg.mode == "dsnas":
            # one sampled child, run alone; w and α (the DSNAS estimator) from the same training batch (search.dsnas)
            loss, logits = self.dsnas.step(x_t, y_t, self.w_optimizer, self.a_optimizer,
                                           update_alpha=not self.arch_frozen, recorder=self.wiring, amp=self.amp,
                                           check=self._check)  # fmt: skip
            search_loss, search_logits, y_v = loss.detach(), logits.detach(), y_t
        elif cfg.mode == "single-level":
            # one batch, one backward pass: α and w descend the same training loss together
            if self.wiring:
                self.wiring.begin("train")
            with autocast(self.device, self.amp):
                logits = model(x_t)
                loss = F.cross_entropy(logits, y_t)
            self._check(loss, "training loss")
            self.w_optimizer.zero_grad(set_to_none=True)
            self.a_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not self.arch_frozen:
                self.a_optimizer.step()
            if self.wiring:
                self.wiring.end(logits, y_t)
            search_loss, search_logits, y_v = loss.detach(), logits.detach(), y_t
        else:
            x_v, y_v = self.valid_loader.sample() if cfg.search_batches == "fresh" else self.valid_loader.next()
            if self.wiring:
                self.wiring.begin("search")
            if self.arch_frozen:  # --arch-warmup: the search loss is still measured, α stays
                with torch.no_grad(), autocast(self.device, self.amp):
                    search_logits = model(x_v)
                    search_loss = F.cross_entropy(search_logits, y_v)
            else:
                search_loss, search_logits = self.architect.step(x_t, y_t, x_v, y_v, eta=lr)
            self._check(search_loss, "search (architecture) loss")
            if self.wiring:
                self.wiring.end(search_logits, y_v)
            self.w_optimizer.zero_grad(set_to_none=True)
            if self.wiring:
                self.wiring.begin("train")
            with autocast(self.device, self.amp):
                logits = model(x_t)
                loss = F.cross_entropy(logits, y_t)
            self._check(loss, "training loss")
            loss.backward()
            if self.wiring:
                self.wiring.end(logits, y_t)
        torch.nn.utils.clip_grad_norm_(model.weight_parameters(), cfg.grad_clip)
        self.w_optimizer.step()
        for a in model.arch_parameters():
            self._check(a.detach(), "architecture parameter (α or β)" if cfg.edge_norm else "architecture parameter α")
        n = y_t.numel()
        self.acc["train_loss"] += float(loss.detach()) * n
        self.acc["train_correct"] += int((logits.argmax(1) == y_t).sum())
        self.acc["search_loss"] += float(search_loss) * y_v.numel()
        self.acc["search_correct"] += int((search_logits.argmax(1) == y_v).sum())
        self.acc["n"] += n
        self.acc["search_n"] += y_v.numel()
        self.acc["steps"] += 1

    @property
    def unsearched(self) -> tuple[str, ...]:
        """The cells this search does not choose (:attr:`SearchConfig.unsearched`): ``("reduce",)`` with
        ``--all-normal`` (no reduction cells), ``("normal",)`` with ``--layers`` 1 or 2 (only reduction cells)."""
        return self.cfg.unsearched

    @property
    def arch_frozen(self) -> bool:
        """Whether α (and beta) wait this epoch: the first ``arch_warmup`` epochs train the weights alone (PC-DARTS)."""
        return self.epoch < self.cfg.arch_warmup

    # -- recording ------------------------------------------------------------------------------------
    def _softmax_alphas(self) -> dict[str, np.ndarray]:
        return {
            name: F.softmax(a.detach().float(), dim=-1).cpu().numpy()
            for name, a in zip(("normal", "reduce"), self.model.arch_parameters())
        }

    def _edge_weights(self) -> dict[str, list[float]]:
        from cellnas.supernet import edge_weights

        betas = self.model.arch_parameters()[2:]
        return {name: edge_weights(b, self.cfg.nodes).round(5).tolist() for name, b in zip(("normal", "reduce"), betas)}

    def record_alphas(self) -> None:
        probs = self._softmax_alphas()
        self.history["normal"].append(probs["normal"])
        self.history["reduce"].append(probs["reduce"])
        if self.cfg.edge_norm:  # PC-DARTS: the node-normalised beta of every edge, beside softmax(α)
            for name, w in self._edge_weights().items():
                self.history.setdefault(f"edge_{name}", []).append(np.asarray(w, dtype=np.float32))
        self.history["epoch"].append(self.epoch + self.step_in_epoch / self.steps_per_epoch)
        self.history["step"].append(self.global_step)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Loss and accuracy of the supernet on the whole search split (eval mode, no graphs); with ``--mode dsnas``,
        of the argmax(α) child, with each batch's BN statistics by default (search.dsnas)."""
        self.model.eval()
        total, correct, loss = 0, 0, 0.0
        child = self.dsnas.argmax_child() if self.dsnas else None
        with self.dsnas.evaluation() if self.dsnas else contextlib.nullcontext():
            for x, y in self.eval_loader:
                with autocast(self.device, self.amp):
                    logits = self.model(x) if child is None else self.dsnas.forward(x, child)
                    loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
                total += y.numel()
        self.model.train()
        return loss / max(total, 1), correct / max(total, 1)

    def write_alpha_files(self) -> None:
        import io

        names = ("normal", "reduce", "betas_normal", "betas_reduce")  # the betas: PC-DARTS edge normalisation
        raw = {n: a.detach().float().cpu().numpy() for n, a in zip(names, self.model.arch_parameters())}
        ops = np.array(self.cfg.ops)
        for name, arrays in (
            ("alphas.npz", {**raw, "ops": ops}),
            (
                "alphas_history.npz",
                {
                    "normal": np.stack(self.history["normal"]) if self.history["normal"] else np.zeros((0,)),
                    "reduce": np.stack(self.history["reduce"]) if self.history["reduce"] else np.zeros((0,)),
                    "epoch": np.asarray(self.history["epoch"], dtype=np.float64),
                    "step": np.asarray(self.history["step"], dtype=np.int64),
                    "ops": ops,
                    "nodes": np.int64(self.cfg.nodes),
                    **{
                        f"edge_weights_{name}": np.stack(self.history[f"edge_{name}"])
                        for name in ("normal", "reduce")
                        if self.history.get(f"edge_{name}")
                    },
                },
            ),
        ):
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            atomic_write_bytes(self.run_dir / name, buf.getvalue())

    def _epoch_done(self) -> bool:
        return self.step_in_epoch >= self.steps_per_epoch

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> None:
        from cellnas.analysis.topology import topology

        cfg = self.cfg
        if self.global_step == 0 and not self.history["step"]:
            self.record_alphas()  # the initial softmax(α), at epoch 0
        bar = _progress(cfg, cfg.epochs * self.steps_per_epoch, self.epoch * self.steps_per_epoch + self.step_in_epoch)
        while self.epoch < cfg.epochs:
            lr = cosine_lr(self.epoch, cfg.epochs, cfg.lr, cfg.lr_min)
            for group in self.w_optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            if bar is not None:
                bar.set_description(f"epoch {self.epoch + 1}/{cfg.epochs}")
            while self.step_in_epoch < self.steps_per_epoch:
                self.step(lr)
                self.step_in_epoch += 1
                self.global_step += 1
                # the last step of an epoch is recorded by the end-of-epoch record below
                if cfg.alpha_every and self.global_step % cfg.alpha_every == 0 and not self._epoch_done():
                    self.record_alphas()
                if bar is not None:
                    a = self.acc
                    bar.set_postfix(loss=f"{a['train_loss'] / a['n']:.3f}", acc=f"{a['train_correct'] / a['n']:.3f}",
                                    search_acc=f"{a['search_correct'] / a['search_n']:.3f}", refresh=False)  # fmt: skip
                    bar.update(1)
                if stop.requested or (cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0):
                    self.elapsed += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    if not self._epoch_done():  # else the end of the epoch below checkpoints (and stops)
                        self.save_checkpoint()
                        if stop.requested:
                            if bar is not None:
                                bar.close()
                            raise self._interrupted()
            self.elapsed += time.perf_counter() - t0
            # end of epoch: record, evaluate, write, checkpoint
            genotype = self.model.genotype()
            a = self.acc
            record = {
                "epoch": self.epoch,
                "lr": lr,
                "train_loss": a["train_loss"] / a["n"],
                "train_acc": a["train_correct"] / a["n"],
                "search_loss": a["search_loss"] / a["search_n"],
                "search_acc": a["search_correct"] / a["search_n"],
                "steps": a["steps"],
            }
            if self.arch_frozen:
                record["arch_frozen"] = True  # --arch-warmup: α (and beta) not updated this epoch
            if cfg.eval_every and ((self.epoch + 1) % cfg.eval_every == 0 or self.epoch + 1 == cfg.epochs):
                record["valid_loss"], record["valid_acc"] = self.evaluate()
            record.update(
                genotype=genotype.to_dict(), topology=topology(genotype), time_s=self.elapsed,
                alphas_softmax={k: v.round(5).tolist() for k, v in self._softmax_alphas().items()},
            )  # fmt: skip
            if cfg.edge_norm:  # PC-DARTS: the normalised beta of every edge, which scales softmax(α) when deriving
                record["edge_weights"] = self._edge_weights()
            if self.dsnas:  # how often each op was sampled on each edge this epoch (the sampled children)
                record["sampled"] = self.dsnas.epoch_summary()
            if self.wiring:
                record["wiring_cost"] = self.wiring.epoch_summary()
                self.wiring.reset_epoch()
            if bar is not None:
                bar.clear()
            log.info(
                "epoch %d/%d  lr %.4g  train %.3f/%.3f  search %.3f/%.3f%s  %s%s",
                self.epoch + 1, cfg.epochs, lr, record["train_loss"], record["train_acc"], record["search_loss"],
                record["search_acc"], f"  valid acc {record['valid_acc']:.3f}" if "valid_acc" in record else "",
                genotype_summary(genotype, self.unsearched), "  (α frozen: --arch-warmup)" if self.arch_frozen else "",
            )  # fmt: skip
            self.check_state()  # an epoch is recorded only when its state is good
            if self.wiring:
                self.wiring.write(self.run_dir)
            append_metrics(self.run_dir, record)
            self.epoch += 1
            self.step_in_epoch = 0
            self.acc = self._fresh_accumulators()
            self.record_alphas()
            save_genotype(genotype, self.run_dir / "genotype.json", unsearched=self.unsearched)
            self.write_alpha_files()
            self.save_checkpoint()
            if stop.requested and self.epoch < cfg.epochs:
                if bar is not None:
                    bar.close()
                raise self._interrupted()
        if bar is not None:
            bar.close()
        if stop.requested:
            log.warning(LAST_STEP_STOP)


def genotype_summary(g: Genotype, unsearched: tuple[str, ...] = ()) -> str:
    """``normal 2c/d4, reduce 2.5c/d3``: width and depth (SPEC 3.1) of the cell types that were searched (all but
    ``unsearched``, :attr:`SearchConfig.unsearched`)."""
    from cellnas.analysis.topology import topology
    from cellnas.genotype import CELL_TYPES

    t = topology(g)
    return ", ".join(f"{c} {t[c]['width']:g}c/d{t[c]['depth']}" for c in CELL_TYPES if c not in unsearched)


def _progress(cfg: SearchConfig, total: int, initial: int):
    """One bar over the whole run, so that its ETA is the run's."""
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)


def search(
    config: SearchConfig | dict | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str | None = None,
    **overrides,
) -> SearchResult:
    """Run (or resume) a DARTS search (SPEC 1.5: the loop and its hyper-parameters; SPEC 1.6: the architecture
    gradient, first or second order; SPEC 1.7: the derived cell) and return its :class:`SearchResult`.

    Also callable as ``cellnas.search(...)``. A fresh search writes a new run directory; nothing else is changed (the
    caller's ``config`` included).

    Parameters
    ----------
    config : SearchConfig, dict or None, default None
        The configuration. A :class:`SearchConfig` is copied and ``overrides`` are applied to the copy (it cannot
        be combined with ``preset``). A dict is read as config keys, as a config file gives them, on top of
        ``preset`` (a saved ``config.json`` works too). ``None``: the defaults (the quick ``digits`` search), or
        ``preset``. Anything else (a ``TrainConfig`` among others) is refused.
    out : str or Path, optional
        The run directory to create (refused when it exists and is not empty); default ``runs/search-<time>``.
    resume : str or Path, optional
        A run directory to continue from its ``checkpoint.pt`` with the config saved there. Only the overrides in
        :data:`RESUME_OVERRIDES` may be given (``epochs`` to extend the run, ``data_dir``, ``device``,
        ``download``, ``progress``, ``plots``); ``config``, ``preset``, ``out`` and every other key are refused. A
        run that has finished its epochs returns its result from its files and writes nothing.
    preset : str, optional
        A named configuration of :data:`~cellnas.search.config.PRESETS` (``darts-cifar10`` is the paper's, SPEC
        1.5), applied before ``overrides``.
    **overrides
        :class:`SearchConfig` fields by name (``epochs=1``, ``channels=4``, ``layers=3``, ``order=2``,
        ``steps_per_epoch=2``, ``progress=False``, ...), applied last; ``None`` means "not given". Edge ablations
        (``remove_edges``, ``fix_edges``) are merged with a preset's per edge (:func:`resolve_config`); on a
        ``config`` they replace its own.

    Returns
    -------
    SearchResult
        The derived genotype, the run directory, the per-epoch metrics, softmax(α) per cell type (``alphas``, with
        the op of each column in ``ops``), the config the run used (its own copy) and the times.

    Raises
    ------
    CellnasError
        A bad argument, named with the valid choices: an unknown key, a value of the wrong type or out of range, a
        config of the wrong kind, ``config`` with ``preset``, a setting that cannot change on resume, missing data.
    RunError
        A run directory that cannot be used as asked (not empty, corrupt checkpoint, locked by another process),
        a divergence (:class:`~cellnas.runs.Diverged`) or a file that could not be written.
    SearchInterrupted
        Ctrl-C (or SIGTERM): the checkpoint is written and the run can be resumed.

    >>> result = search(epochs=1, steps_per_epoch=2, channels=4, layers=3, progress=False)  # doctest: +SKIP
    >>> result.genotype, result.run_dir  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    # the run directory's lock is held from before anything is written until the last file is: a second process
    # that runs or resumes the same directory meanwhile stops with one line naming this one (runs.run_lock)
    with contextlib.ExitStack() as held:
        if resume is not None:
            run_dir = _path_arg(resume, "resume")
            _check_resume_args(run_dir, config, out, preset, overrides)
            done = _finished_result(run_dir, overrides, t_start)
            if done is not None:  # nothing to search or write: no lock either (a read-only copy reads as well)
                return done
            job = _resume(run_dir, overrides, held)
        else:
            cfg = config_from(config, preset, overrides)  # validated, and this search's own (never the caller's)
            if out is not None:
                _path_arg(out, "out")  # checked, kept as given: new_run_dir refuses an empty --out by its text
            cfg.warn_if_arch_never_trains()
            if "normal" in cfg.unsearched:  # once per run: said when it starts, not again on every --resume
                log.warning("%s; the normal cell in genotype.json is derived from untrained α and marked as not "
                            "searched", cfg.why_unsearched())  # fmt: skip
            new_dirs = missing_dirs(out)
            run_dir = _new_locked_run_dir(out, held, new_dirs)
            try:
                job = _Search(cfg, run_dir)
                atomic_write_json(run_dir / "config.json", cfg.to_dict())
                write_meta(run_dir, str(job.device), {"kind": "search"})
            except BaseException:
                # nothing to resume from yet (data not found, a full disk): leave no directory behind, runs/ and the
                # parents of --out this start made included (run_dir was empty when this process took its lock, so
                # every file in it is this start's); a directory the user made before is kept
                undo_start(run_dir, new_dirs, _START_FILES, fresh=out is None or run_dir in new_dirs)
                raise
            warn_short_nodes = getattr(job.model, "warn_short_nodes", None)  # edge ablations (search.wiring)
            if warn_short_nodes is not None:
                warn_short_nodes()  # once per run: said when it starts, not again on every --resume
        stop = StopFlag()
        with stop.installed():
            try:
                job.run(stop)
            except KeyboardInterrupt:
                raise SearchInterrupted(
                    f"aborted; the last checkpoint in {run_dir} is kept (continue with --resume {run_dir})"
                ) from None
            except WriteFailed as exc:  # a full disk or a read-only directory mid-run: say what is kept, how to go on
                raise _write_failed(run_dir, exc) from None
            except Diverged as exc:  # kept in meta.json: a --resume (or --out) of a run with no checkpoint says why
                record_stop(run_dir, exc.cause)
                raise
        genotype = job.model.genotype()
        _finish(job)
        return SearchResult(
            genotype=genotype, run_dir=run_dir, metrics=read_metrics(run_dir), alphas=job._softmax_alphas(),
            seconds=time.perf_counter() - t_start, config=job.cfg, search_seconds=job.elapsed,
            resumed=resume is not None,
        )  # fmt: skip


#: What ``--resume`` may change: the length of the run (extend a finished one), how it reports, and where its data
#: are and what it runs on (the same data: a checkpoint's fingerprint refuses others).
RESUME_OVERRIDES = ("epochs", "progress", "plots", "data_dir", "device", "download")


def _path_arg(value: object, name: str) -> Path:
    """``value`` as a path, or a :class:`CellnasError` naming the argument ``name``."""
    if not isinstance(value, (str, os.PathLike)):
        raise CellnasError(f"{name}= must be a path (str or pathlib.Path), got {type(value).__name__} {value!r}")
    return Path(value)


def _check_resume_args(run_dir: Path, config: object, out: object, preset: object, overrides: dict) -> None:
    """Refuse what a resume of ``run_dir`` cannot take, as ``cellnas search --resume`` refuses other flags: a run
    goes on with the config saved in its checkpoint, so ``config``, ``preset``, ``out`` and every key but the
    :data:`RESUME_OVERRIDES` are refused, all named in one message with what may change; an unknown key is refused
    naming the valid ones."""
    check_config_type(config)  # a TrainConfig is named as such, whatever else is wrong
    names = [f.name for f in dataclasses.fields(SearchConfig)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise CellnasError(f"unknown search config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    given = {"config": config, "preset": preset, "out": out}
    refused = [k for k, v in given.items() if v is not None]
    refused += sorted(k for k, v in overrides.items() if v is not None and k not in RESUME_OVERRIDES)
    if refused:
        raise CellnasError(f"resume continues {run_dir} with the config saved in its checkpoint; {', '.join(refused)} "
                           f"cannot change on resume (only {', '.join(RESUME_OVERRIDES)} may; a larger epochs extends "
                           "the run); start a new search to change the others")  # fmt: skip


def _resume(run_dir: Path, overrides: dict, held: contextlib.ExitStack) -> _Search:
    """The job of ``run_dir`` restored from its checkpoint, with its lock taken (in ``held``) before anything is
    written; ``config.json`` rewritten as the run now continues (an extended ``epochs``)."""
    held.enter_context(resume_lock(run_dir, CHECKPOINT))
    state = load_checkpoint(run_dir, kind="search", version=CHECKPOINT_VERSION)
    cfg = _resume_config(run_dir, state, overrides)
    saved = state["config"]
    started = state["epoch"] + (1 if state["step_in_epoch"] else 0)
    if cfg.epochs < started:
        raise CellnasError(f"--epochs {cfg.epochs} is fewer than the {started} epochs {run_dir} has already run "
                           f"(or started); give {started} or more to extend it")  # fmt: skip
    cfg.warn_if_arch_never_trains()
    job = _Search(cfg, run_dir)  # the device, the data: a resume that cannot go on stops here, having said nothing
    job.load_state_dict(state)
    check_same_data(run_dir, state.get("data_fingerprint"), job.data_fingerprint, cfg.dataset,
                    state["config"].get("data_dir"), cfg.data_dir)  # fmt: skip
    truncate_metrics(run_dir, job.epoch)
    atomic_write_json(run_dir / "config.json", cfg.to_dict())  # --epochs and --data-dir as the run now goes on
    if cfg.epochs != int(saved_epochs := saved["epochs"]) and state["epoch"]:
        _say_new_epochs(run_dir, cfg, int(saved_epochs), state["epoch"])  # only once config.json says so
    record_session(run_dir, str(job.device), {"epoch": job.epoch, "step_in_epoch": job.step_in_epoch,
                                              "position": job.position()})  # fmt: skip
    log.info("resuming %s %s", run_dir, job.position())
    return job


def _resume_config(run_dir: Path, state: dict, overrides: dict) -> SearchConfig:
    """The config a resume of ``run_dir`` goes on with: its checkpoint's, with the :data:`RESUME_OVERRIDES` given. A
    value refused is blamed on the command line, or on the saved config when this cellnas refuses that now."""
    saved = dict(state["config"])
    if saved.get("order") == 1 and saved.get("hvp") == "exact":  # accepted (and ignored) before 2026-12-02
        log.warning("%s was saved with --hvp exact at order 1, where it has no effect; resuming with fd", run_dir)
        saved["hvp"] = "fd"
    given = {k: v for k, v in overrides.items() if k in RESUME_OVERRIDES and v is not None}
    try:
        return resolve_config(None, {**saved, **given})
    except CellnasError as exc:
        try:
            resolve_config(None, saved)
        except CellnasError as old:  # a value an earlier cellnas accepted and this one checks
            raise saved_config_refused(run_dir, old) from None
        raise CellnasError(f"cannot resume {run_dir}: {exc}") from None  # the command line's value is to blame


def _finished_result(run_dir: Path, overrides: dict, t_start: float) -> SearchResult | None:
    """The result of a finished search read from its files, writing nothing, as :func:`_finish` left them; ``None``
    when there is more to do and :func:`_resume` goes on: the last session did not write its final files (no
    ``end_time`` in ``meta.json``), a larger ``--epochs`` extends the run, another process holds its lock (the
    resume then names it), a file is missing or damaged (the resume writes it again), or plots are asked for.

    The result reads as the search's own did: ``alphas`` softmax(α) of ``alphas.npz``'s logits, ``config`` a new
    object (the saved config with the :data:`RESUME_OVERRIDES` given; :func:`search` has refused the others),
    ``search_seconds`` every session's training steps, ``resumed`` true."""
    meta = read_json_object(run_dir / "meta.json")
    written = read_json_object(run_dir / "config.json")
    if meta is None or not meta.get("end_time") or written is None or not (run_dir / CHECKPOINT).is_file():
        return None
    if overrides.get("epochs") not in (None, written.get("epochs")) or overrides.get("plots"):
        return None
    if lock_holder(run_dir) is not None:
        return None
    state = load_checkpoint(run_dir, kind="search", version=CHECKPOINT_VERSION)
    epochs = state["epoch"]
    if state["step_in_epoch"] or not epochs == state["config"].get("epochs") == written.get("epochs"):
        return None
    metrics = read_metrics(run_dir)[:epochs]
    try:
        genotype = Genotype.from_dict(read_json_object(run_dir / "genotype.json"))
        with np.load(run_dir / "alphas.npz") as raw:  # softmax(α) as _Search._softmax_alphas computes it
            alphas = {name: F.softmax(torch.from_numpy(raw[name]).float(), dim=-1).numpy()
                      for name in ("normal", "reduce")}  # fmt: skip
    except Exception:  # noqa: BLE001 - a missing or damaged file: the resume writes it again
        return None
    if not metrics or len(metrics) < epochs or metrics[-1].get("genotype") != genotype.to_dict():
        return None
    cfg = _resume_config(run_dir, state, overrides)  # a bad value on the command line is refused as by a resume
    log.info("%s has finished its %d epochs: its result, read from its files (--epochs N to extend it)", run_dir,
             epochs)  # fmt: skip
    return SearchResult(
        genotype=genotype, run_dir=run_dir, metrics=metrics, alphas=alphas, seconds=time.perf_counter() - t_start,
        config=cfg, search_seconds=float(state["elapsed"]), resumed=True,
    )  # fmt: skip


def _write_failed(run_dir: Path, exc: WriteFailed) -> RunError:
    """One line for a file that could not be written during a search: which, why, what is kept and how to go on."""
    fix = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "make the directory writable"
    if not (run_dir / CHECKPOINT).is_file():
        return RunError(f"cannot write {exc.path}: {exc.reason}; the search had written no checkpoint yet: {fix}, "
                        f"then start it again (remove {run_dir} first)")  # fmt: skip
    return RunError(f"cannot write {exc.path}: {exc.reason}; the last checkpoint is kept in {run_dir / CHECKPOINT}: "
                    f"{fix}, then continue with: cellnas search --resume {run_dir}")


def _say_new_epochs(run_dir: Path, cfg: SearchConfig, before: int, done: int) -> None:
    """Warn, as ``cellnas train --resume`` does, what a new ``--epochs`` does to the search still to run: the cosine
    learning rate of the weights is a function of the epoch count (SPEC 1.5)."""
    epochs, lr, lr_min = cfg.epochs, cfg.lr, cfg.lr_min
    was = (f"the {before}-epoch schedule ended at {cosine_lr(before - 1, before, lr, lr_min):.4g}" if done >= before
           else f"instead of {cosine_lr(done, before, lr, lr_min):.4g}")  # fmt: skip
    log.warning(
        "--epochs %d changes %s from %d to %d epochs (config.json now says %d): the cosine learning rate is recomputed "
        "over %d epochs, epoch %d runs at %.4g (%s); the epochs already run followed the %d-epoch schedule, so the "
        "search differs from one started with --epochs %d", epochs, run_dir, before, epochs, epochs, epochs, done + 1,
        cosine_lr(done, epochs, lr, lr_min), was, before, epochs,
    )  # fmt: skip


#: The files a fresh search writes before its first checkpoint (removed again when it cannot start).
_START_FILES = ("config.json", "meta.json")


def _new_locked_run_dir(out: str | Path | None, held: contextlib.ExitStack, new_dirs: list[Path]) -> Path:
    """A fresh run directory (:func:`new_run_dir`) with its lock taken (in ``held``); ``new_dirs``: the directories
    it creates (:func:`~cellnas.runs.missing_dirs`), removed again when the lock cannot be taken."""
    run_dir = new_run_dir(out, "search")
    try:
        held.enter_context(run_lock(run_dir, new=True))
    except WriteFailed:  # the lock file could not be written (a full disk): nothing else is there
        undo_start(run_dir, new_dirs, fresh=out is None or run_dir in new_dirs)
        raise
    return run_dir


def _finish(job: _Search) -> None:
    """Final files: genotype, α arrays, meta end time, plots."""
    import json

    run_dir = job.run_dir
    save_genotype(job.model.genotype(), run_dir / "genotype.json", unsearched=job.unsearched)
    job.write_alpha_files()
    meta_path = run_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    meta["end_time"] = now_iso()
    meta["search_seconds"] = job.elapsed  # the training steps of every session; not set-up, evaluation or plots
    atomic_write_json(meta_path, meta)
    if not job.cfg.plots:
        return
    try:
        from cellnas.plots.search import plot_search_run

        plot_search_run(run_dir)
    except Exception as exc:  # noqa: BLE001 - a plotting failure must not lose a finished search
        log.warning("could not draw the plots of %s: %s", run_dir, exc)
