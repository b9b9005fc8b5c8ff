"""DSNAS search (Hu et al., CVPR 2020): one sampled child network per step, the framework behind the "growing" and
"width preference" patterns of Xie et al. (AISTATS 2021; SPEC 4).

Every step, for each cell type the network has:

1. **sample a child** (:class:`ChildSampler`): on every edge e one op k ~ Categorical(softmax(α_e)), one sample per
   step shared by every cell of the type (SPEC 4: "1 sample per batch"); ``--sample-rest uniform`` draws it from
   the uniform distribution instead. A removed edge (``--remove-edge``) runs nothing, a fixed edge (``--fix-edge``)
   always its op;
2. **run only the child** (:meth:`cellnas.supernet.SearchCell._forward_sampled`): edge e gives Z_ek · o_k(x_i),
   with the one-hot Z as a tensor that requires grad. Z_ek = 1 in value, so the child is the discrete network, and
   dL/dZ_ek = <dL/dx_j, o_k(x_i)> = C_ek is the cost of the chosen op (straight through); C(none) = 0;
3. **weights**: SGD on the same batch (single-level), gradient-norm clipped as in every mode;
4. **α**: the DSNAS estimator (:func:`alpha_gradient`), then Adam.

The estimator follows the reference ``SNAS-Series/SNAS-Series``, ``Analysis/snas/model_search.py``,
``Network.forward`` (the ``if self.args.dsnas:`` branch) with the flags of ``Analysis/snas/train.sh``
(``--dsnas --edge_reward --gen_max_child``, no ``--edge_reward_norm``):

* ``loss_alpha = Σ_e log p_e(Z_e)`` with ``p = softmax(α)``, back-propagated, so ``α.grad[e] = Z_e - p_e``. This
  is the reference's reduction cell (``reduce_one_hot_prob``, one entry per edge) and DSNAS's estimator. For the
  normal cell the reference's code differs (``dsnas_alpha_loss``, below);
* ``--edge_reward``: the reward of edge e is ``R_e = normal_weights_tensor.grad.sum(0).sum(-1)``, the chosen op's
  dL/dZ summed over the cells (the loss is the batch **mean** cross-entropy), clamped to [-5, 5]; ``α.grad[e]`` is
  multiplied by it (``normal_log_alpha.grad.data.mul_(normal_edge_reward.view(-1, 1))``);
* ``Analysis/snas/train_search.py`` ``train()``: the α gradient's norm is clipped to 10
  (``clip_grad_norm_(arch_parameters(), 10.)``), then Adam steps; under ``--random_sample`` (uniform children)
  the α step is skipped.

So ``dL/dα_e = clamp(R_e, ±reward_clip) · (Z_e - p_e)``, an unbiased score-function (REINFORCE) estimate of
``∇_α E_Z[Σ_e R_e]`` whose expectation is p_e^k (C_e^k - Σ_m p_e^m C_e^m) per op (SPEC 4's unified view). The
reference samples with ``OneHotCategorical(probs=softmax(α)).sample()`` (``_get_onehot_mask``); ``--gen_max_child``
only adds a validation of the argmax(α) child (``infer`` with ``gen_max_child_flag``). :class:`ChildSampler` draws
the same distribution by inverting the cumulative probabilities (one uniform number per edge, from a generator of
its own that the checkpoint carries, so a resumed run equals an uninterrupted one); it is also the distribution
of a Gumbel-max sample.

Choices where the reference is silent or that differ from it (each documented where it is made):

* the normal cell's estimator (``dsnas_alpha_loss``). The reference sums the normal cell's chosen-op
  probabilities into one number before the log (``normal_one_hot_prob += ...`` over the edges, the per-edge line
  above it commented out), and ``(log(normal_one_hot_prob) + log(reduce_one_hot_prob)).sum()`` broadcasts that
  scalar over the reduce cell's n edges: the normal loss is ``n · log Σ_e p_e(Z_e)``, so edge e's row is
  ``n · p_e(Z_e) / Σ_e' p_e'(Z_e')`` times the per-edge form's, still multiplied by R_e. Its expectation is no
  longer SPEC 4's p_k (C_k - Σ p_m C_m) unless every p_e(Z_e) is equal (uniform α, at the start). cellnas
  defaults to the per-edge form (``"per-edge"``), the estimator of the DSNAS paper and of SPEC 4's unified view,
  applied to both cell types; ``"reference"`` reproduces the reference's normal-cell form (S over the edges
  sampled from α, n the number of edges of a cell);

* the clamp of R_e (``dsnas_reward_clip``, default the reference's 5) and the α gradient clip
  (``dsnas_arch_clip``, default 10) are config values;
* ablated edges (removed or fixed) take no part in the estimator: their α rows get no gradient (the reference
  multiplies its fixed edges' rows by their reward all the same; here, as in the DARTS modes of
  :class:`~cellnas.search.wiring.ControlledSupernet`, an ablated edge's α has no say in the network);
* every weight of the supernet gets a gradient each step, zero for the ops the child did not run, so that SGD's
  momentum and weight decay act on all of them as in the reference (whose ``zero_grad`` zeroes gradients, PyTorch
  1.x); only the child's ops update their BN running statistics (the reference also runs the whole supernet with
  the one-hot weights after the step, which updates every op's statistics; cellnas does not run that pass);
* the validation accuracy of ``metrics.jsonl`` is the **argmax child**'s (argmax of α on every edge, ``none``
  included; the reference's ``valid_acc_argmax_alpha``): deterministic, and it draws no sample. Since an op's BN
  running statistics see only the steps that sampled it, and a cell's input depends on the children sampled
  before it, they do not describe the argmax child (on digits they gave chance accuracy where the same child with
  batch statistics gave its training accuracy); by default (``dsnas_eval_bn="batch"``) the child is evaluated
  with the statistics of each evaluation batch, the running statistics restored afterwards;
  ``dsnas_eval_bn="running"`` uses the running statistics, as the reference's eval mode does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.genotype import CELL_TYPES
from cellnas.schedule import autocast
from cellnas.supernet import one_hot_choice

__all__ = ["SAMPLE_REST", "EVAL_BN", "ChildSampler", "DsnasSearch", "alpha_gradient", "sampler_seed"]

#: How the free edges (neither removed nor fixed) of a child are drawn: from softmax(α), or uniformly over the ops
#: (SPEC 4 (c); the reference's ``--random_sample``, under which α is not updated).
SAMPLE_REST = ("alpha", "uniform")
#: The BN statistics the argmax child is evaluated with: each evaluation batch's own, or the running ones
#: (module docstring).
EVAL_BN = ("batch", "running")


def sampler_seed(seed: int) -> int:
    """The seed of a run's child sampler: a stream of ``seed`` of its own, apart from the weights, α and loaders."""
    return int(np.random.SeedSequence([int(seed), 0xD5]).generate_state(1, np.uint64)[0] >> 1)


class ChildSampler:
    """Draws one op per edge (a child network) for each cell type, from a generator of its own.

    ``removed``: ``{cell: [edge row, ...]}`` (no op: -1); ``fixed``: ``{cell: {edge row: op index}}``; ``rest``:
    ``"alpha"`` (k ~ softmax(α_e)) or ``"uniform"`` for every other edge. Every call draws one uniform number per
    edge and cell type whatever the ablations, so the stream does not depend on them.

    >>> s = ChildSampler(n_edges=5, n_ops=8, removed={"normal": [0, 2]}, fixed={"normal": {1: 7}}, seed=0)
    >>> child = s.sample({"normal": torch.zeros(5, 8)})["normal"]
    >>> child[0], child[1], child[2]
    (-1, 7, -1)
    """

    def __init__(self, n_edges: int, n_ops: int, removed: dict | None = None, fixed: dict | None = None,
                 rest: str = "alpha", seed: int | torch.Generator = 0) -> None:  # fmt: skip
        if rest not in SAMPLE_REST:
            raise ValueError(f"rest must be one of {', '.join(SAMPLE_REST)}, got {rest!r}")
        self.n_edges, self.n_ops, self.rest = n_edges, n_ops, rest
        self.removed = {c: sorted(v) for c, v in (removed or {}).items()}
        self.fixed = {c: dict(v) for c, v in (fixed or {}).items()}
        self.generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))

    def probabilities(self, alphas: torch.Tensor) -> torch.Tensor:
        """(edges, ops) sampling probabilities in float64 on the CPU: softmax(α), or uniform."""
        if self.rest == "uniform":
            return torch.full((self.n_edges, self.n_ops), 1.0 / self.n_ops, dtype=torch.float64)
        return F.softmax(alphas.detach().to("cpu", torch.float64), dim=-1)

    def sample(self, alphas: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
        """``{cell: (op index per edge, -1 for a removed edge)}`` for each cell type of ``alphas``."""
        out = {}
        for cell in CELL_TYPES:
            if cell not in alphas:
                continue
            cdf = self.probabilities(alphas[cell]).cumsum(-1)
            u = torch.rand(self.n_edges, 1, generator=self.generator, dtype=torch.float64) * cdf[:, -1:]
            # inverse CDF: the first op whose cumulative probability exceeds u
            ks = (cdf <= u).sum(-1).clamp_(max=self.n_ops - 1).tolist()
            for e in self.removed.get(cell, []):
                ks[e] = -1
            for e, k in self.fixed.get(cell, {}).items():
                ks[e] = k
            out[cell] = tuple(int(k) for k in ks)
        return out

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


ALPHA_LOSSES = ("per-edge", "reference")


def alpha_gradient(z: torch.Tensor, probs: torch.Tensor, reward: torch.Tensor, reward_clip: float = 5.0,
                   free: torch.Tensor | None = None, form: str = "per-edge") -> torch.Tensor:  # fmt: skip
    """The DSNAS estimate of dL/dα for one cell type (module docstring; reference ``Analysis/snas/model_search.py``
    ``Network.forward``, ``--dsnas --edge_reward``):

        dL/dα_e = clamp(R_e, -reward_clip, reward_clip) · (Z_e - p_e)                        (form "per-edge")
        dL/dα_e = clamp(R_e, -reward_clip, reward_clip) · n p_e(Z_e) / S · (Z_e - p_e)      (form "reference")

    the second the reference code's normal cell, the gradient of ``n log S``, ``S = Σ_e p_e(Z_e)`` over the free
    edges, n the number of edges. ``z``: (edges, ops) the one-hot sample; ``probs``: softmax(α); ``reward``:
    (edges,) R_e, the chosen op's cost summed over the cells at the scale of the batch-mean loss; ``free``: (edges,)
    booleans, the edges sampled from α (None: all). The rows of the other edges (removed, fixed) are zero.

    >>> z = torch.tensor([[0.0, 1.0], [1.0, 0.0]]); p = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    >>> alpha_gradient(z, p, torch.tensor([-2.0, 8.0]))
    tensor([[ 1.0000, -1.0000],
            [ 3.7500, -3.7500]])
    >>> alpha_gradient(z, p, torch.tensor([-2.0, 8.0]), form="reference")  # S = 0.5 + 0.25, n = 2
    tensor([[ 1.3333, -1.3333],
            [ 2.5000, -2.5000]])
    """
    if form not in ALPHA_LOSSES:
        raise ValueError(f"form must be one of {', '.join(ALPHA_LOSSES)}, got {form!r}")
    mask = torch.ones(len(z), dtype=probs.dtype, device=probs.device) if free is None else free.to(probs.dtype)
    r = reward.clamp(-reward_clip, reward_clip)
    if form == "reference":
        chosen = (z * probs).sum(-1)  # p_e(Z_e)
        total = (chosen * mask).sum()
        r = r * len(z) * chosen / total
    return (r * mask)[:, None] * (z - probs)


class DsnasSearch:
    """The DSNAS step of a search (module docstring): sampling, the child's forward and backward, the α estimator.

    ``model``: a :class:`~cellnas.supernet.SearchNetwork` or a :class:`~cellnas.search.wiring.ControlledSupernet`
    (whose edge ablations the sampler applies). Keeps per epoch how often each op was sampled on each edge
    (:meth:`epoch_summary`).
    """

    def __init__(self, model: nn.Module, *, seed: int, rest: str = "alpha", reward_clip: float = 5.0,
                 arch_clip: float = 10.0, eval_bn: str = "batch", alpha_loss: str = "per-edge") -> None:  # fmt: skip
        if eval_bn not in EVAL_BN:
            raise ValueError(f"eval_bn must be one of {', '.join(EVAL_BN)}, got {eval_bn!r}")
        if alpha_loss not in ALPHA_LOSSES:
            raise ValueError(f"alpha_loss must be one of {', '.join(ALPHA_LOSSES)}, got {alpha_loss!r}")
        self.eval_bn = eval_bn
        # the reference's summed form is its normal cell's; its reduction cell is per edge (alpha_gradient)
        self.alpha_forms = {"normal": alpha_loss, "reduce": "per-edge"}
        self.model = model
        self.net = getattr(model, "net", model)
        space = self.net.space
        self.n_ops = space.n_ops
        # the cell types the network has (an all-normal net has no reduction cell; 1-2 layers have no normal one)
        kinds = {"reduce" if cell.reduction else "normal" for cell in self.net.cells}
        self.cell_types = tuple(c for c in CELL_TYPES if c in kinds)
        removed = getattr(model, "remove_edges", {})
        fixed = getattr(model, "fix_edges", {})
        self.sampler = ChildSampler(space.n_edges, space.n_ops, removed, fixed, rest, sampler_seed(seed))
        self.free = {}
        for c in self.cell_types:
            free = torch.ones(space.n_edges, dtype=torch.bool)
            free[list(removed.get(c, [])) + list(fixed.get(c, {}))] = False
            self.free[c] = free
        self.reward_clip, self.arch_clip = reward_clip, arch_clip
        self.updates_alpha = rest == "alpha"  # the reference's --random_sample skips the α step
        self.reset_epoch()

    def alphas(self) -> dict[str, nn.Parameter]:
        return {c: self.net.alphas_normal if c == "normal" else self.net.alphas_reduce for c in self.cell_types}

    def reset_epoch(self) -> None:
        self.counts = {c: np.zeros((self.net.space.n_edges, self.n_ops), np.int64) for c in self.cell_types}

    def forward(self, x: torch.Tensor, choice: dict[str, Sequence[int]], z: dict[str, torch.Tensor] | None = None):
        """The child's logits: ``choice`` per cell type, its one-hot op weights ``z`` (default: constants)."""
        z = z or {}
        return self.model(x, weights_normal=z.get("normal"), weights_reduce=z.get("reduce"),
                          choice_normal=choice.get("normal"), choice_reduce=choice.get("reduce"))  # fmt: skip

    def argmax_child(self) -> dict[str, tuple[int, ...]]:
        """Per cell type, argmax(α) on every edge (``none`` included; the reference's ``--gen_max_child`` child),
        with the ablations applied."""
        out = {}
        for c, a in self.alphas().items():
            ks = a.detach().argmax(-1).tolist()
            for e in self.sampler.removed.get(c, []):
                ks[e] = -1
            for e, k in self.sampler.fixed.get(c, {}).items():
                ks[e] = k
            out[c] = tuple(ks)
        return out

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        """Around an evaluation of a child in eval mode: with ``eval_bn="batch"`` its BNs normalise with each batch's
        statistics (training mode), and every buffer (running statistics, batch counts) is put back afterwards, so
        that evaluating changes nothing. ``"running"``: eval mode as it is."""
        if self.eval_bn == "running":
            yield
            return
        saved = {name: b.clone() for name, b in self.model.named_buffers()}
        was_training = self.model.training
        self.model.train()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, b in self.model.named_buffers():
                    b.copy_(saved[name])
            self.model.train(was_training)

    def step(self, x: torch.Tensor, y: torch.Tensor, w_optimizer: torch.optim.Optimizer,
             a_optimizer: torch.optim.Optimizer, *, update_alpha: bool = True, recorder=None, amp=None,
             check: Callable[[torch.Tensor, str], None] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Sample a child, run it on ``(x, y)``, back-propagate, and (``update_alpha`` and uniform sampling off)
        set α's gradient by :func:`alpha_gradient` and step Adam. Leaves the weight gradients for the caller's
        clipping and SGD step (zero for the ops the child did not run). -> (loss, logits)."""
        alphas = self.alphas()
        choice = self.sampler.sample({c: a.detach() for c, a in alphas.items()})
        for c, ks in choice.items():
            for e, k in enumerate(ks):
                if k >= 0:
                    self.counts[c][e, k] += 1
        z = {c: one_hot_choice(ks, self.n_ops, alphas[c]).requires_grad_() for c, ks in choice.items()}
        if recorder is not None:
            recorder.begin("train")
        device = x.device
        with autocast(device, amp):
            logits = self.forward(x, choice, z)
            loss = F.cross_entropy(logits, y)
        if check is not None:
            check(loss, "training loss")
        # zeroed, not freed: every weight then steps (momentum, weight decay), as in the reference (module docstring)
        w_optimizer.zero_grad(set_to_none=False)
        a_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in w_optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        if recorder is not None:
            recorder.end(logits, y)
        if update_alpha and self.updates_alpha:
            for c, a in alphas.items():
                zc = z[c].detach()
                # the chosen op's dL/dZ, summed over the cells of the type (no gradient: the child ran no op at all)
                reward = torch.zeros(len(zc), device=zc.device) if z[c].grad is None else (z[c].grad * zc).sum(-1)
                probs = F.softmax(a.detach(), dim=-1)
                a.grad = alpha_gradient(zc, probs, reward, self.reward_clip, self.free[c].to(a.device),
                                        self.alpha_forms[c]).to(a.dtype)
            torch.nn.utils.clip_grad_norm_(list(alphas.values()), self.arch_clip)
            a_optimizer.step()
        return loss, logits

    def epoch_summary(self) -> dict[str, list[list[int]]]:
        """``{cell: [[times op k was sampled on edge e] per edge]}`` for this epoch (``metrics.jsonl``'s
        ``sampled``); then starts a new epoch's counts."""
        out = {c: n.tolist() for c, n in self.counts.items()}
        self.reset_epoch()
        return out

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "counts": {c: n.copy() for c, n in self.counts.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.counts = {c: np.asarray(n, np.int64).copy() for c, n in state["counts"].items()}
