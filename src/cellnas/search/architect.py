"""The architecture gradient of DARTS (Liu et al., ICLR 2019, Sec. 2.3, Eq. 6-8; SPEC 1.6).

Bilevel problem: min_α L_val(w*(α), α) s.t. w*(α) = argmin_w L_train(w, α).

* first order (ξ = 0): ∇_α L_val(w, α);
* second order: with the virtual step w' = w - ξ (m + ∇_w L_train(w, α) + λ w) (ξ = the
  current weight learning rate, m = momentum × the SGD momentum buffer, λ = weight decay,
  exactly the next SGD step of quark0/darts), the gradient is
  ∇_α L_val(w', α) - ξ ∇²_{α,w} L_train(w, α) · v with v = ∇_{w'} L_val(w', α).
  The Hessian-vector product is the central finite difference of Eq. 8 with
  ε = 0.01 / ‖v‖₂ (global norm) on the **training** batch, or, with ``hvp='exact'``, the
  same product by double back-propagation.

The network is never rebuilt: the weights are swapped in place and restored exactly
from a saved copy.

With ``amp`` (bf16 autocast, opt-in), every pass runs under autocast except the two
finite-difference passes, which stay fp32: the perturbation ε v = 0.01 v / ‖v‖ is far below
bf16's resolution of the weights (8 bits of mantissa), so cast to bf16 the two weight sets
would be nearly the same and their difference mostly rounding.

A measured caveat (tests/test_architect.py): on ReLU networks with batch-normalised
pre-activations, ReLU and max-pool kinks lie densely around w, and at the paper's
ε = 0.01/‖v‖ the central difference crosses many of them, so on small networks it can
differ from the exact product by more than the product itself. The FD product converges
to the exact one as ε -> 0 (float64: to 1e-9 at ε ≈ 1e-7/‖v‖). ``hvp='fd'`` with
``eps_scale=0.01`` stays the default because it is what DARTS ran; ``hvp='exact'`` computes
the derivative the paper's Eq. 7 asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cellnas.schedule import autocast

__all__ = ["Architect", "fd_hvp", "exact_hvp", "unrolled_weights"]

Tensors = list[torch.Tensor]


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor], **kw) -> Tensors:
    gs = torch.autograd.grad(loss, params, allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


@torch.no_grad()
def _assign(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    for p, v in zip(params, values):
        p.copy_(v)


def unrolled_weights(
    weights: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    eta: float,
    momentum: float,
    weight_decay: float,
) -> Tensors:
    """w' = w - η (m + g + λ w) with m = momentum · buffer (0 before the first SGD step) (SPEC 1.6 step 1)."""
    out = []
    for w, g in zip(weights, grads):
        buf = optimizer.state.get(w, {}).get("momentum_buffer")
        m = buf * momentum if buf is not None else torch.zeros_like(w)
        out.append(w.detach() - eta * (m + g + weight_decay * w.detach()))
    return out


def fd_hvp(
    loss_fn: Callable[[], torch.Tensor],
    weights: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    v: Sequence[torch.Tensor],
    eps_scale: float = 0.01,
) -> Tensors:
    """∇²_{α,w} L · v by central differences (DARTS Eq. 8): [∇_α L(w+εv) - ∇_α L(w-εv)] / 2ε, ε = eps_scale/‖v‖.

    ``loss_fn()`` evaluates the training loss at the current weights. The weights are
    restored bit-exactly afterwards. (Two popular ports wrote the scale as ``-eta/2.*eps``,
    i.e. -η·ε/2 instead of -η/(2ε); the tests check the magnitude against :func:`exact_hvp`.)
    """
    norm = torch.sqrt(sum((t.double() ** 2).sum() for t in v))
    eps = float(eps_scale / norm.clamp_min(1e-30))
    saved = [w.detach().clone() for w in weights]
    with torch.no_grad():
        for w, d in zip(weights, v):
            w.add_(d, alpha=eps)
    g_plus = _grads(loss_fn(), alphas)
    with torch.no_grad():
        for w, w0, d in zip(weights, saved, v):
            w.copy_(w0).sub_(d, alpha=eps)
    g_minus = _grads(loss_fn(), alphas)
    _assign(weights, saved)
    return [(gp - gm) / (2.0 * eps) for gp, gm in zip(g_plus, g_minus)]


def exact_hvp(
    loss_fn: Callable[[], torch.Tensor],
    weights: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    v: Sequence[torch.Tensor],
) -> Tensors:
    """∇_α (∇_w L · v) by double back-propagation: the exact mixed Hessian-vector product."""
    g_w = _grads(loss_fn(), weights, create_graph=True)
    dot = sum((g * d).sum() for g, d in zip(g_w, v) if g.requires_grad)
    if not isinstance(dot, torch.Tensor):
        return [torch.zeros_like(a) for a in alphas]
    return _grads(dot, alphas)


class Architect:
    """Computes and applies the architecture gradient for one search step.

    ``model`` must expose ``arch_parameters()``, ``unused_arch_parameters()`` and ``weight_parameters()``;
    ``w_optimizer`` is the weights' SGD (its momentum buffers enter the virtual step). ``amp``: the autocast dtype of
    the forward passes (``None``: fp32); the finite-difference passes of second order stay fp32 (module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        w_optimizer: torch.optim.Optimizer,
        a_optimizer: torch.optim.Optimizer,
        *,
        order: int = 1,
        hvp: str = "fd",
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        eps_scale: float = 0.01,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        amp: torch.dtype | None = None,
    ) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        if hvp not in ("fd", "exact"):
            raise ValueError(f"hvp must be 'fd' or 'exact', got {hvp!r}")
        self.model, self.w_optimizer, self.a_optimizer = model, w_optimizer, a_optimizer
        self.order, self.hvp = order, hvp
        self.momentum, self.weight_decay, self.eps_scale = momentum, weight_decay, eps_scale
        self.loss = loss
        self.amp = amp

    def _loss(self, x: torch.Tensor, y: torch.Tensor, *, fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        # fp32 switches autocast off even inside a caller's autocast block
        with torch.autocast(x.device.type, enabled=False) if fp32 else autocast(x.device, self.amp):
            logits = self.model(x)
            return self.loss(logits, y), logits

    def gradient(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, eta: float
    ) -> tuple[Tensors, torch.Tensor, torch.Tensor]:
        """The α-gradient; returns (grads, validation loss, validation logits)."""
        alphas = list(self.model.arch_parameters())
        if self.order == 1:
            loss, logits = self._loss(x_val, y_val)
            return _grads(loss, alphas), loss.detach(), logits.detach()
        return self._unrolled_gradient(x_train, y_train, x_val, y_val, eta, alphas)

    def _unrolled_gradient(self, x_train, y_train, x_val, y_val, eta, alphas):
        weights = list(self.model.weight_parameters())
        # 1. virtual step w' (the exact next SGD step, momentum and weight decay included)
        g_w = _grads(self._loss(x_train, y_train)[0], weights)
        w_prime = unrolled_weights(weights, g_w, self.w_optimizer, eta, self.momentum, self.weight_decay)
        saved = [w.detach().clone() for w in weights]
        # quark0 evaluates w' on a throw-away copy of the network: keep BN running stats out of it
        buffers = [b.detach().clone() for b in self.model.buffers()]
        _assign(weights, w_prime)
        # 2. ∇_α L_val(w', α) and v = ∇_w' L_val(w', α) from one backward pass
        loss_val, logits = self._loss(x_val, y_val)
        grads = _grads(loss_val, alphas + weights)
        g_alpha, v = grads[: len(alphas)], grads[len(alphas) :]
        _assign(weights, saved)
        _assign(list(self.model.buffers()), buffers)
        # 3. Hessian-vector product on the training batch at w
        def train_loss():  # noqa: E306
            return self._loss(x_train, y_train, fp32=self.hvp == "fd")[0]

        if self.hvp == "fd":
            h = fd_hvp(train_loss, weights, alphas, v, self.eps_scale)
        else:
            h = exact_hvp(train_loss, weights, alphas, v)
        # 4. ∇_α = g_α - ξ h
        return [ga - eta * hh for ga, hh in zip(g_alpha, h)], loss_val.detach(), logits.detach()

    def step(self, x_train, y_train, x_val, y_val, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step on α; returns (validation loss, validation logits)."""
        grads, loss, logits = self.gradient(x_train, y_train, x_val, y_val, eta)
        self.a_optimizer.zero_grad(set_to_none=True)
        unused = {id(p) for p in self.model.unused_arch_parameters()}
        for a, g in zip(self.model.arch_parameters(), grads):
            a.grad = None if id(a) in unused else g  # Adam skips it: no weight decay on what no loss reads
        self.a_optimizer.step()
        return loss, logits
