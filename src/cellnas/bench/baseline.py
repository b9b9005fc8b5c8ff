"""A deliberately textbook DARTS supernet and architect: the yardstick of ``cellnas bench search-step --baseline``.

This is ``quark0/darts cnn/{operations,model_search,architect}.py`` transcribed (SPEC 1.1-1.6), kept slow on
purpose so that speed-ups of :mod:`cellnas.supernet` are measured honestly:

* every op of every edge is computed, ``none`` included (``x.mul(0.)``); each conv op applies its own ReLU;
* NCHW float32 throughout; the mixed output is the Python ``sum(w * op(x) for ...)``;
* the softmax of α is taken once per cell (as quark0 does);
* first order: the α-gradient comes from a full ``loss.backward()`` (weight gradients computed and thrown away);
* second order: the unrolled model w' is a **freshly built copy** of the network every step
  (``model.new()`` + ``load_state_dict``, quark0's ``_compute_unrolled_model``), the Hessian-vector product is
  the finite difference of DARTS Eq. 8 with R = 0.01 / ||v|| on the flattened weight vector.

The module layout (and so the ``state_dict`` keys) is the one of :class:`cellnas.supernet.SearchNetwork`, so
:func:`baseline_from` copies a real supernet, α included. The one intended difference from quark0 is the
:class:`cellnas.ops.FactorizedReduce` padding (identical output for even sizes, and odd sizes work).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.ops import make_generator, seeded_init

__all__ = ["BaselineMixedOp", "BaselineCell", "BaselineNetwork", "BaselineArchitect", "baseline_from", "BASELINE_OPS"]


class _ReLUConvBN(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class _DilConv(nn.Sequential):
    def __init__(self, C: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C, bias=False),
            nn.Conv2d(C, C, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


class _SepConv(nn.Sequential):
    def __init__(self, C: int, kernel_size: int, stride: int, padding: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, kernel_size, stride=stride, padding=padding, groups=C, bias=False),
            nn.Conv2d(C, C, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, kernel_size, stride=1, padding=padding, groups=C, bias=False),
            nn.Conv2d(C, C, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Zero(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class _FactorizedReduce(nn.Module):
    def __init__(self, C_in: int, C_out: int, affine: bool):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


#: quark0's OPS (``operations.py``), plus the two extra published primitives.
BASELINE_OPS = {
    "none": lambda C, stride, affine: _Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda C, stride, affine: _Identity() if stride == 1 else _FactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: _SepConv(C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: _SepConv(C, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C, stride, affine: _SepConv(C, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C, stride, affine: _DilConv(C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: _DilConv(C, 5, stride, 4, 2, affine),
    "conv_7x1_1x7": lambda C, stride, affine: nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    ),
}


class BaselineMixedOp(nn.Module):
    """quark0's ``MixedOp``: ``sum(w * op(x) for w, op in zip(weights, self._ops))`` over every op."""

    def __init__(self, C: int, stride: int, ops: tuple[str, ...]):
        super().__init__()
        self._ops = nn.ModuleList()
        for name in ops:
            op = BASELINE_OPS[name](C, stride, False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class BaselineCell(nn.Module):
    """quark0's search ``Cell``: preprocessing, then node j = sum over i < j of MixedOp_(i,j)(x_i)."""

    def __init__(self, ops, n_nodes, C_prev_prev, C_prev, C, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.n_nodes = n_nodes
        if reduction_prev:
            self.preprocess0 = _FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = _ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = _ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._ops = nn.ModuleList()
        for j in range(n_nodes):
            for i in range(j + 2):
                self._ops.append(BaselineMixedOp(C, 2 if reduction and i < 2 else 1, ops))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.n_nodes):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.n_nodes :], dim=1)


class BaselineNetwork(nn.Module):
    """quark0's ``Network`` (model_search.py) with α as parameters; same arguments as ``SearchNetwork``."""

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        space=None,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        all_normal: bool = False,
        seed: int | torch.Generator | None = None,
    ):
        super().__init__()
        from cellnas.supernet import SearchSpace

        self.space = SearchSpace() if space is None else space
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.in_channels, self.stem_multiplier, self.all_normal = in_channels, stem_multiplier, all_normal
        gen = make_generator(seed)
        shape = (self.space.n_edges, self.space.n_ops)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape, generator=gen))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape, generator=gen))
        with seeded_init(gen):
            self._build()

    def _build(self) -> None:
        C, n_nodes = self.C, self.space.n_nodes
        C_curr = self.stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(self.in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = () if self.all_normal else (self.layers // 3, 2 * self.layers // 3)
        for i in range(self.layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            cell = BaselineCell(self.space.ops, n_nodes, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, n_nodes * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, self.num_classes)

    def config(self) -> dict:
        return {
            "C": self.C, "num_classes": self.num_classes, "layers": self.layers, "space": self.space,
            "in_channels": self.in_channels, "stem_multiplier": self.stem_multiplier, "all_normal": self.all_normal,
        }  # fmt: skip

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def new(self) -> BaselineNetwork:
        """A freshly built network with the same α (quark0 ``Network.new``); its weights are re-initialised."""
        model_new = BaselineNetwork(**self.config()).to(self.alphas_normal.device, self.alphas_normal.dtype)
        with torch.no_grad():
            for x, y in zip(model_new.arch_parameters(), self.arch_parameters()):
                x.copy_(y)
        return model_new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            alphas = self.alphas_reduce if cell.reduction else self.alphas_normal
            weights = F.softmax(alphas, dim=-1)
            s0, s1 = s1, cell(s0, s1, weights)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1))

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x), y)


def baseline_from(net: nn.Module) -> BaselineNetwork:
    """A :class:`BaselineNetwork` holding the weights, buffers and α of the supernet ``net``."""
    cfg = net.config()
    if cfg.pop("partial_channels", 1) != 1 or cfg.pop("edge_norm", False):
        raise ValueError("the baseline is DARTS's supernet: build it from a supernet without PC-DARTS options")
    from cellnas.supernet import SearchSpace

    space = cfg["space"] if isinstance(cfg["space"], SearchSpace) else SearchSpace(**cfg["space"])
    base = BaselineNetwork(**{**cfg, "space": space})
    p = next(net.parameters())
    base = base.to(p.device, p.dtype)
    base.load_state_dict(net.state_dict())
    return base


def _concat(xs) -> torch.Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


class BaselineArchitect:
    """quark0's ``Architect`` (architect.py), on :class:`BaselineNetwork` (SPEC 1.6).

    ``step`` runs one Adam step on α: first order from ``loss.backward()``; second order through a
    freshly built unrolled model and the finite-difference Hessian-vector product.
    """

    def __init__(self, model: BaselineNetwork, a_optimizer: torch.optim.Optimizer, *, order: int = 1,
                 momentum: float = 0.9, weight_decay: float = 3e-4, r: float = 0.01) -> None:  # fmt: skip
        self.model, self.optimizer = model, a_optimizer
        self.order, self.network_momentum, self.network_weight_decay, self.r = order, momentum, weight_decay, r

    def step(self, input_train, target_train, input_valid, target_valid, eta, network_optimizer):
        self.optimizer.zero_grad()
        if self.order == 2:
            loss = self._backward_step_unrolled(input_train, target_train, input_valid, target_valid, eta,
                                                network_optimizer)  # fmt: skip
        else:
            loss = self._backward_step(input_valid, target_valid)
        self.optimizer.step()
        return loss

    def _backward_step(self, input_valid, target_valid):
        loss = self.model._loss(input_valid, target_valid)
        loss.backward()
        return loss.detach()

    def _compute_unrolled_model(self, input, target, eta, network_optimizer):
        weights = self.model.weight_parameters()
        loss = self.model._loss(input, target)
        theta = _concat(weights).detach()
        try:
            moment = _concat(network_optimizer.state[v]["momentum_buffer"] for v in weights).mul_(
                self.network_momentum
            )
        except KeyError:
            moment = torch.zeros_like(theta)
        dtheta = _concat(torch.autograd.grad(loss, weights)).detach() + self.network_weight_decay * theta
        return self._construct_model_from_theta(theta.sub(eta * (moment + dtheta)))

    def _backward_step_unrolled(self, input_train, target_train, input_valid, target_valid, eta, network_optimizer):
        unrolled_model = self._compute_unrolled_model(input_train, target_train, eta, network_optimizer)
        unrolled_loss = unrolled_model._loss(input_valid, target_valid)
        unrolled_loss.backward()
        dalpha = [v.grad for v in unrolled_model.arch_parameters()]
        vector = [v.grad.detach() for v in unrolled_model.weight_parameters()]
        implicit_grads = self._hessian_vector_product(vector, input_train, target_train)
        for g, ig in zip(dalpha, implicit_grads):
            g.sub_(eta * ig)
        for v, g in zip(self.model.arch_parameters(), dalpha):
            v.grad = g.detach().clone()
        return unrolled_loss.detach()

    def _construct_model_from_theta(self, theta: torch.Tensor) -> BaselineNetwork:
        model_new = self.model.new()
        model_dict = self.model.state_dict()
        params, offset = {}, 0
        arch = {id(p) for p in self.model.arch_parameters()}
        for k, v in self.model.named_parameters():
            if id(v) in arch:
                continue
            v_length = int(np.prod(v.size()))
            params[k] = theta[offset : offset + v_length].view(v.size())
            offset += v_length
        model_dict.update(params)
        model_new.load_state_dict(model_dict)
        return model_new

    def _hessian_vector_product(self, vector, input, target):
        weights = self.model.weight_parameters()
        R = self.r / _concat(vector).norm()
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(R * v)
        loss = self.model._loss(input, target)
        grads_p = torch.autograd.grad(loss, self.model.arch_parameters())
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.sub_(2 * R * v)
        loss = self.model._loss(input, target)
        grads_n = torch.autograd.grad(loss, self.model.arch_parameters())
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(R * v)
        return [(x - y).div_(2 * R) for x, y in zip(grads_p, grads_n)]

