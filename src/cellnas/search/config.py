"""Typed configuration of a DARTS search, and its presets (SPEC 1.5).

The CLI and config files fill a :class:`SearchConfig`; library code takes it as is.
The resolved config is written to ``config.json`` and into every checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass, field

from cellnas._config import AMP_CHOICES, absolute_paths, check_types, config_from_dict, recorded_data_dir
from cellnas._config import config_from as _config_from
from cellnas.errors import CellnasError, unknown_name
from cellnas.genotype import PRIMITIVES, edge_pairs, parse_edge

__all__ = ["SearchConfig", "PRESETS", "FLAGS", "resolve_config", "config_from", "check_config_type", "edge_key",
           "merge_ablations"]

log = logging.getLogger(__name__)


#: The ``cellnas search`` flag of every config key whose flag is not ``--<key>``; ``None``: no flag (config file or
#: Python API only). Error messages name a key's flag only where there is one.
FLAGS: dict[str, str | None] = {
    "remove_edges": "--remove-edge", "fix_edges": "--fix-edge", "arch_betas": None, "unrolled_eps": None,
    "dsnas_reward_clip": None, "dsnas_arch_clip": None, "dsnas_eval_bn": None,
    "dsnas_alpha_loss": None,
}  # fmt: skip


@dataclass
class SearchConfig:
    """Every knob of a search. Defaults are the quick ``digits`` configuration; ``darts-cifar10`` is the paper's."""

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    train_portion: float = 0.5
    batch_size: int = 64
    # search space and supernet
    channels: int = 8
    layers: int = 5
    nodes: int = 4
    k: int = 2
    ops: tuple[str, ...] = PRIMITIVES
    all_normal: bool = False
    # PC-DARTS (Xu et al., ICLR 2020): partial channels K (1 = off) and edge normalisation; off by default
    partial_channels: int = 1
    edge_norm: bool = False
    # edge ablations (Xie et al. 2021, SPEC 4 (c)): {"normal": ["0-2", 2]}, {"normal": {"1-2": "sep_conv_5x5"}}
    remove_edges: dict = field(default_factory=dict)
    fix_edges: dict = field(default_factory=dict)
    # bilevel optimisation (SPEC 1.5/1.6)
    epochs: int = 15
    order: int = 1
    hvp: str = "fd"
    # bilevel | single-level (DARTS relaxation) | dsnas (sampled one-op children, Hu et al. CVPR 2020; search.dsnas)
    mode: str = "bilevel"
    # architecture batches: "stream" (each search image once per epoch) or "fresh" (quark0: a new shuffled
    # iterator every step, so batches are drawn with replacement across steps); SPEC 1.5
    search_batches: str = "stream"
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    unrolled_eps: float = 0.01
    arch_warmup: int = 0
    # --mode dsnas (search.dsnas): free edges sampled from softmax(α) or uniformly (SPEC 4 (c); α then not updated),
    # the clamp of each edge's reward and the norm clip of α's gradient (the reference's 5 and 10)
    sample_rest: str = "alpha"
    dsnas_reward_clip: float = 5.0
    dsnas_arch_clip: float = 10.0
    # the BN statistics the argmax child is evaluated with: "batch" (each evaluation batch's) or "running"
    dsnas_eval_bn: str = "batch"
    # the normal cell's α estimator: "per-edge" (DSNAS, SPEC 4) or "reference" (SNAS-Series' summed form; dsnas.py)
    dsnas_alpha_loss: str = "per-edge"
    # run control
    seed: int = 2
    device: str = "auto"
    # bf16 autocast (opt-in; "auto": on CUDA only); the finite-difference passes of second order stay fp32
    amp: str = "off"
    steps_per_epoch: int | None = None
    eval_every: int = 1
    alpha_every: int = 0
    checkpoint_every: int = 0
    record_wiring: bool = False
    progress: bool = True
    plots: bool = True
    preset: str | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`CellnasError` naming the first bad value (wrong type or out of range) and its flag. Also
        records the data folder the search reads as an absolute path (:func:`~cellnas._config.recorded_data_dir`:
        ``./data`` of the current directory when none was given for a dataset that reads files), and an
        ``imagefolder:PATH`` dataset with an absolute path."""
        check_types(self, FLAGS)

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise CellnasError(msg)

        need(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        need(self.channels >= 1, f"--channels must be >= 1, got {self.channels}")
        need(self.layers >= 1, f"--layers must be >= 1, got {self.layers}")
        need(self.nodes >= 1, f"--nodes must be >= 1, got {self.nodes}")
        need(0.0 < self.train_portion < 1.0, f"--train-portion must be in (0, 1), got {self.train_portion}")
        need(self.order in (1, 2), f"--order must be 1 or 2, got {self.order}")
        need(self.hvp in ("fd", "exact"), f"--hvp must be 'fd' or 'exact', got {self.hvp!r}")
        need(self.mode in ("bilevel", "single-level", "dsnas"),
             f"--mode must be bilevel, single-level or dsnas, got {self.mode!r}")  # fmt: skip
        need(self.sample_rest in ("alpha", "uniform"),
             f"--sample-rest must be alpha or uniform, got {self.sample_rest!r}")  # fmt: skip
        need(self.sample_rest == "alpha" or self.mode == "dsnas",
             f"--sample-rest {self.sample_rest} needs --mode dsnas (only DSNAS samples children; --mode {self.mode} "
             "mixes every op)")  # fmt: skip
        need(self.search_batches in ("stream", "fresh"),
             f"--search-batches must be stream or fresh, got {self.search_batches!r}")  # fmt: skip
        need(not (self.mode == "single-level" and self.order == 2), "--order 2 needs --mode bilevel")
        if self.mode == "dsnas":
            need(self.order == 1, "--order 2 needs --mode bilevel: --mode dsnas samples one child per step and has "
                                  "no unrolled step (valid with dsnas: --order 1)")  # fmt: skip
            need(self.search_batches == "stream",
                 f"--search-batches {self.search_batches} needs --mode bilevel: --mode dsnas trains α on the training "
                 "batches (valid with dsnas: --search-batches stream)")  # fmt: skip
            need(self.partial_channels == 1 and not self.edge_norm,
                 "--partial-channels/--edge-norm (PC-DARTS) cannot be combined with --mode dsnas: a sampled child runs "
                 "whole ops (valid with dsnas: --partial-channels 1, --no-edge-norm)")  # fmt: skip
        # the dsnas-only keys are checked in every mode: a bad value is a bad config whichever mode reads it
        need(self.dsnas_eval_bn in ("batch", "running"),
             f"\"dsnas_eval_bn\" in the config must be batch or running, got {self.dsnas_eval_bn!r}")  # fmt: skip
        need(self.dsnas_alpha_loss in ("per-edge", "reference"),
             f"\"dsnas_alpha_loss\" in the config must be per-edge or reference, got {self.dsnas_alpha_loss!r}")
        for key in ("dsnas_reward_clip", "dsnas_arch_clip"):
            value = getattr(self, key)
            need(value > 0, f"\"{key}\" in the config must be positive (inf: no clipping), got {value}")
        need(self.hvp == "fd" or self.order == 2,
             f"--hvp {self.hvp} needs --order 2 (first order computes no Hessian-vector product)")  # fmt: skip
        # argparse and Python's json take inf and nan; a value no training can run with is refused by name
        for key in ("lr", "lr_min", "arch_lr", "weight_decay", "arch_weight_decay"):
            value = getattr(self, key)
            need(math.isfinite(value), f"--{key.replace('_', '-')} must be a finite number, got {value}")
        need(self.lr > 0, f"--lr must be positive, got {self.lr}")
        need(self.arch_lr > 0, f"--arch-lr must be positive, got {self.arch_lr}")
        need(0 <= self.lr_min <= self.lr, f"--lr-min must be in [0, lr], got {self.lr_min}")
        need(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        need(self.arch_weight_decay >= 0, f"--arch-weight-decay must be >= 0, got {self.arch_weight_decay}")
        # clip_grad_norm_ with a negative max flips the gradient (ascent), with 0 zeroes it; inf is refused as train
        # refuses it (a large number clips nothing)
        need(self.grad_clip > 0, f"--grad-clip must be positive, got {self.grad_clip}")
        need(all(0 <= b < 1 for b in self.arch_betas),
             f"\"arch_betas\" in the config must be two numbers in [0, 1), got {self.arch_betas}")  # fmt: skip
        need(math.isfinite(self.unrolled_eps) and self.unrolled_eps > 0,
             f"\"unrolled_eps\" in the config must be positive, got {self.unrolled_eps}")  # fmt: skip
        need(self.k in (1, 2), f"--k (inputs kept per node) must be 1 or 2, got {self.k}")
        need(self.eval_every >= 0, f"--eval-every must be >= 0, got {self.eval_every}")
        need(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        # a preset that records the costs (the wiring ones) is named, with the way to search without them
        rw_off = (f"; --preset {self.preset} sets --record-wiring, --no-record-wiring turns it off"
                  if PRESETS.get(self.preset or "", {}).get("record_wiring") else "; --no-record-wiring turns it off")
        need(self.amp in AMP_CHOICES, f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        need(not (self.record_wiring and self.amp != "off"),
             "--record-wiring needs --amp off: the costs are inner products of gradients and activations, which "
             f"bf16 would round to a few digits{rw_off}")  # fmt: skip
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "--steps-per-epoch must be >= 1")
        need(self.alpha_every >= 0 and self.checkpoint_every >= 0, "--alpha-every/--checkpoint-every must be >= 0")
        need(not (self.record_wiring and self.order == 2),
             "--record-wiring needs --order 1 (or --mode single-level): the second-order step's extra passes "
             f"have no place in the cost analysis{rw_off}")  # fmt: skip
        need(self.arch_warmup >= 0, f"--arch-warmup (epochs before α is updated) must be >= 0, got {self.arch_warmup}")
        need(not ((self.partial_channels > 1 or self.edge_norm)
                  and (self.record_wiring or self.remove_edges or self.fix_edges)),
             "--partial-channels/--edge-norm (PC-DARTS) cannot be combined with --record-wiring, --remove-edge or "
             "--fix-edge: the wiring analysis (Xie et al.) studies the plain DARTS supernet")  # fmt: skip
        need(not (self.record_wiring and self.arch_warmup),
             f"--record-wiring needs --arch-warmup 0: the cost analysis records every architecture step{rw_off}")
        self._check_ablations()
        from cellnas.supernet import check_partial_channels

        check_partial_channels(self.channels, self.partial_channels)
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"--device must be auto, cpu or cuda[:N], got {self.device!r}")  # fmt: skip
        self.dataset = absolute_paths({"dataset": self.dataset})["dataset"]
        self.data_dir = recorded_data_dir(self.dataset, self.data_dir)

    def _check_ablations(self) -> None:
        """Every edge ablation names an edge of this cell (else the valid edges are listed, and a preset's entry says
        it is the preset's), gives an edge one ablation, and leaves each cell type an edge that is not removed."""
        pairs = edge_pairs(self.nodes)
        valid = ", ".join(f"{i}-{j}" for i, j in pairs)
        preset = PRESETS.get(self.preset or "", {})
        parsed: dict[str, dict[str, set[int]]] = {}
        for key, flag, kind in (("remove_edges", "--remove-edge", list), ("fix_edges", "--fix-edge", dict)):
            for cell, edges in getattr(self, key).items():
                if cell not in ("normal", "reduce"):
                    raise CellnasError(f"{flag} {cell}:...: unknown cell type {cell!r}; valid: normal, reduce")
                if not isinstance(edges, kind):
                    what = "a list of edges" if kind is list else "an object of edge: op"
                    raise CellnasError(f"\"{key}\" in the config: {cell!r} must map to {what}, got {edges!r}")
                ours = preset.get(key, {}).get(cell, kind())
                for e in edges:
                    try:
                        parsed.setdefault(cell, {}).setdefault(key, set()).add(parse_edge(e, self.nodes))
                    except CellnasError:
                        mine = e in ours and (kind is list or ours[e] == edges[e])
                        src = f" (from --preset {self.preset})" if mine else ""
                        shown = f"{cell}:{e}" + (f"={edges[e]}" if kind is dict else "")
                        raise CellnasError(f"{flag} {shown}{src}: no edge {e!r} in a cell with {self.nodes} "
                                           f"intermediate node(s); valid edges: {valid} (or their indices "
                                           f"0..{len(pairs) - 1})") from None  # fmt: skip
        for cell, sets in parsed.items():
            removed, fixed = sets.get("remove_edges", set()), sets.get("fix_edges", set())
            both = ", ".join("{}-{}".format(*pairs[e]) for e in sorted(removed & fixed))
            if both:
                raise CellnasError(f"{cell} edge(s) {both} both removed and fixed; give each edge one ablation")
            if len(removed) == len(pairs):
                raise CellnasError(f"--remove-edge removes every edge of the {cell} cell ({valid}): none is left to "
                                   "search, and the derived cell would come from untrained α; keep at least one "
                                   "(drop a --remove-edge, or --fix-edge the edge instead)")  # fmt: skip

    @property
    def unsearched(self) -> tuple[str, ...]:
        """The cell types this search does not choose, their α never trained: ``("reduce",)`` with ``--all-normal``
        (no reduction cells); ``("normal",)`` with ``--layers`` 1 or 2, where the reductions at ``layers//3`` and
        ``2*layers//3`` are every cell."""
        if self.all_normal:
            return ("reduce",)
        return ("normal",) if self.layers < 3 else ()

    def why_unsearched(self) -> str:
        """Why :attr:`unsearched` holds what it does, for the summary and the warning."""
        if self.all_normal:
            return "--all-normal: every cell of the supernet is a normal cell"
        if self.layers < 3:
            return (f"--layers {self.layers}: every cell is a reduction cell (they sit at layers//3 and "
                    "2*layers//3); 3 or more layers give the supernet a normal cell")  # fmt: skip
        return ""

    def warn_if_arch_never_trains(self) -> None:
        """Log once, when a run starts or is resumed, if the warm-up covers every epoch, or if uniform children
        (``--sample-rest uniform``) leave α alone."""
        if self.sample_rest == "uniform":
            log.warning("--sample-rest uniform: the free edges are sampled uniformly and α is not updated (the "
                        "reference's --random_sample); the derived cell is the initial α's")  # fmt: skip
            return
        if self.arch_warmup >= self.epochs:
            log.warning("--arch-warmup %d >= --epochs %d: α is not updated in this run (the derived cell is the "
                        "initial α's)", self.arch_warmup, self.epochs)  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        return config_from_dict(cls, d, "search", tuples=("ops", "arch_betas"))


#: Named configurations. ``darts-cifar10`` is quark0/darts train_search.py (SPEC 1.5).
PRESETS: dict[str, dict] = {
    "darts-cifar10": dict(
        dataset="cifar10", channels=16, layers=8, batch_size=64, epochs=50, lr=0.025, lr_min=0.001,
        momentum=0.9, weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-4, arch_betas=(0.5, 0.999),
        arch_weight_decay=1e-3, train_portion=0.5, seed=2, nodes=4, k=2,
    ),
    "darts-cifar10-2nd": dict(
        dataset="cifar10", channels=16, layers=8, batch_size=64, epochs=50, order=2, seed=2,
    ),
    # PC-DARTS (Xu et al., ICLR 2020) train_search.py: K=4, edge normalisation, batch 256, lr 0.1 cosine to 0, arch
    # lr 6e-4, α frozen for the first 15 of 50 epochs [RECALLED from the public code]
    "pc-darts-cifar10": dict(
        dataset="cifar10", channels=16, layers=8, batch_size=256, epochs=50, lr=0.1, lr_min=0.0, momentum=0.9,
        weight_decay=3e-4, grad_clip=5.0, arch_lr=6e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
        train_portion=0.5, partial_channels=4, edge_norm=True, arch_warmup=15, seed=2,
    ),
    "digits": dict(dataset="digits", channels=8, layers=5, batch_size=64, epochs=15),
    # Xie et al. (AISTATS 2021) analysis supernet: 8 all-normal cells, C=16 (SPEC 4)
    "wiring": dict(all_normal=True, channels=16, layers=8, batch_size=96, epochs=50, record_wiring=True),
    "wiring-minimal": dict(all_normal=True, nodes=2, channels=16, layers=8, batch_size=96, epochs=50,
                           record_wiring=True),
    # the DSNAS runs of Xie et al.'s analysis (SPEC 4; SNAS-Series Analysis/snas/train.sh: --dsnas --edge_reward
    # --gen_max_child, drop-path 0, one sample per batch): 150 epochs, batch 96, seed 6
    "wiring-dsnas": dict(mode="dsnas", all_normal=True, channels=16, layers=8, batch_size=96, epochs=150, seed=6,
                         lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, arch_lr=3e-4, grad_clip=5.0,
                         record_wiring=True),
    "wiring-dsnas-minimal": dict(mode="dsnas", all_normal=True, nodes=2, channels=16, layers=8, batch_size=96,
                                 epochs=150, seed=6, lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4,
                                 arch_lr=3e-4, grad_clip=5.0, record_wiring=True),
    # SPEC 4 (c), the paper's Fig. 10b: one minimal cell, edges 0 (0-2) and 2 (0-3) deleted, edge 1 (1-2) fixed to
    # sep_conv_5x5 (op 7 under the reference's --order), the rest sampled uniformly. The cell concatenates both
    # intermediate nodes (the reference's run has --multiplier 1: node 3 alone), so node 2 also feeds the output
    "wiring-dsnas-ablation": dict(mode="dsnas", all_normal=True, nodes=2, channels=16, layers=1, batch_size=96,
                                  epochs=150, seed=6, record_wiring=True, sample_rest="uniform",
                                  remove_edges={"normal": ["0-2", "0-3"]},
                                  fix_edges={"normal": {"1-2": "sep_conv_5x5"}}),
}  # fmt: skip


_ANY_NODES = 64  # edge_pairs(n) is a prefix of edge_pairs(n + 1): an edge's (i, j) does not depend on the cell


def edge_key(edge) -> object:
    """What identifies an edge among ablations: its ``(i, j)``, whether given as ``'i-j'``, ``'i->j'`` or an index;
    text that names no edge stands for itself (validation refuses it later)."""
    try:
        return edge_pairs(_ANY_NODES)[parse_edge(edge, _ANY_NODES)]
    except (CellnasError, TypeError, ValueError):
        return repr(edge)


def _well_formed(remove: object, fix: object) -> bool:
    return (isinstance(remove, dict) and isinstance(fix, dict) and all(isinstance(v, list) for v in remove.values())
            and all(isinstance(v, dict) for v in fix.values()))  # fmt: skip


def merge_ablations(base_remove: dict, base_fix: dict, remove: dict, fix: dict) -> tuple[dict, dict]:
    """The edge ablations ``base_*`` (a preset's, a config file's) with ``remove``/``fix`` added, per cell type. An
    edge named in ``remove`` or ``fix`` drops ``base``'s entry for that edge (fixing an edge the base removes takes
    it out of the removed list); a removed edge given twice is kept once."""
    if not _well_formed(base_remove, base_fix) or not _well_formed(remove, fix):
        return remove, fix  # validation names the malformed value
    out_remove: dict = {}
    out_fix: dict = {}
    for cell in [*dict.fromkeys([*base_remove, *base_fix, *remove, *fix])]:
        given = {edge_key(e) for e in [*remove.get(cell, []), *fix.get(cell, {})]}
        removed: dict = {}
        for e in [*(e for e in base_remove.get(cell, []) if edge_key(e) not in given), *remove.get(cell, [])]:
            removed.setdefault(edge_key(e), e)
        fixed = {e: op for e, op in base_fix.get(cell, {}).items() if edge_key(e) not in given}
        fixed.update(fix.get(cell, {}))
        if removed:
            out_remove[cell] = list(removed.values())
        if fixed:
            out_fix[cell] = fixed
    return out_remove, out_fix


def resolve_config(preset: str | None = None, overrides: dict | None = None) -> SearchConfig:
    """Defaults, then the preset, then explicit overrides (e.g. from the command line). Edge ablations
    (``remove_edges``, ``fix_edges``) are added to the preset's, per cell type and edge (:func:`merge_ablations`)."""
    values: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise unknown_name("search preset", preset, PRESETS)
        values.update(copy.deepcopy(PRESETS[preset]))  # a run never shares (and changes) a preset's dicts
        values["preset"] = preset
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    base_remove, base_fix = values.get("remove_edges", {}), values.get("fix_edges", {})
    if (base_remove or base_fix) and ("remove_edges" in given or "fix_edges" in given):
        remove, fix = merge_ablations(base_remove, base_fix, given.get("remove_edges", {}), given.get("fix_edges", {}))
        given["remove_edges"], given["fix_edges"] = remove, fix
        log.info("edge ablations of --preset %s and the given ones, merged (a given edge replaces the preset's "
                 "entry): remove_edges %s, fix_edges %s", preset, remove, fix)  # fmt: skip
    values.update(given)
    cfg = SearchConfig.from_dict(absolute_paths(values))
    cfg.validate()
    meant = PRESETS[preset].get("dataset") if preset is not None else None
    if meant is not None and cfg.dataset != meant:  # allowed (one protocol on another dataset), but said
        log.warning("search preset %r is made for %s, but --dataset %s was given: searching %s with %s's "
                    "hyper-parameters", preset, meant, cfg.dataset, cfg.dataset, preset)  # fmt: skip
    return cfg


def check_config_type(config: object) -> None:
    """Refuse, with a :class:`CellnasError`, a ``config`` that :func:`cellnas.search` cannot take: anything but
    ``None``, a :class:`SearchConfig` or a dict of its keys with string names. A training config is named as one."""
    if config is None or isinstance(config, SearchConfig):
        return
    if isinstance(config, dict):
        bad = [k for k in config if not isinstance(k, str)]
        if bad:
            raise CellnasError(f"a search config dict needs the key names as strings, got {bad[0]!r}; valid keys: "
                               f"{', '.join(f.name for f in dataclasses.fields(SearchConfig))}")  # fmt: skip
        return
    from cellnas.train.config import TrainConfig

    if isinstance(config, TrainConfig):
        raise CellnasError("cellnas.search got a TrainConfig, which is a training config (retraining a genotype from "
                           "scratch): train with cellnas.train(genotype, config); a search takes a SearchConfig or a "
                           "dict of its keys")  # fmt: skip
    named = isinstance(config, str) and config in PRESETS
    hint = f" (to search with the preset {config!r}, give preset={config!r})" if named else ""
    raise CellnasError(f"a search config must be a SearchConfig, a dict of its keys or None, got "
                       f"{type(config).__name__} {config!r}{hint}")  # fmt: skip


def config_from(config: SearchConfig | dict | None, preset: str | None, overrides: dict) -> SearchConfig:
    """The validated config a fresh search runs with (SPEC 1.5), always a new object: a :class:`SearchConfig` (a copy,
    with ``overrides`` on top), a dict of its keys (as a config file, over ``preset``) or ``None`` (``preset`` and
    ``overrides``); the rules are :func:`cellnas._config.config_from`'s, shared with training."""
    check_config_type(config)
    return _config_from(SearchConfig, resolve_config, config, preset, overrides)
