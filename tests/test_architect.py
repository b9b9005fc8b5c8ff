"""The mathematics of the architecture gradient (SPEC 1.6), in float64 on a tiny supernet.

The finite-difference Hessian-vector product must match the exact one within the
finite-difference error, the whole second-order gradient must match autograd through the
unrolled step, and ξ = 0 must reduce to first order. (Two popular ports shipped the FD scale
as -η·ε/2 instead of -η/(2ε) for years; these tests catch that.)
"""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from cellnas.search.architect import Architect, exact_hvp, fd_hvp, unrolled_weights
from cellnas.supernet import SearchNetwork, SearchSpace

LR, MOMENTUM, WD = 0.05, 0.9, 3e-4


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = SearchNetwork(C=3, num_classes=4, layers=3, space=SearchSpace(n_nodes=2), in_channels=1, seed=0)
    model = model.double().train()
    with torch.no_grad():  # α away from uniform so the Hessian is not degenerate
        for a in model.arch_parameters():
            a.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    x_t, x_v = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randn(6, 1, 8, 8, generator=g).double()
    y_t, y_v = torch.randint(0, 4, (6,), generator=g), torch.randint(0, 4, (6,), generator=g)
    w_opt = torch.optim.SGD(model.weight_parameters(), LR, momentum=MOMENTUM, weight_decay=WD)
    # one real SGD step so that momentum buffers are non-zero and enter the virtual step
    F.cross_entropy(model(x_t), y_t).backward()
    w_opt.step()
    w_opt.zero_grad(set_to_none=True)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    return model, w_opt, a_opt, (x_t, y_t, x_v, y_v)


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def _rel_err(a, b):
    a, b = _flat(a), _flat(b)
    return float((a - b).norm() / b.norm())


def test_finite_difference_hvp_is_exact_on_a_quadratic_at_the_papers_epsilon():
    """L(w, α) = (αᵀ M w)² + ½‖w‖²: ∇²_{α,w} L · v = 2 [(αᵀMw)(M v) + (αᵀ M v)(M w)] in closed form;
    a central difference is exact for a quadratic in w, so FD must match at ε = 0.01/‖v‖."""
    g = torch.Generator().manual_seed(0)
    M = torch.randn(5, 7, generator=g, dtype=torch.float64)
    w = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(7, generator=g, dtype=torch.float64)

    def loss():
        return (alpha @ M @ w) ** 2 + 0.5 * (w * w).sum()

    closed = 2 * ((alpha @ M @ w).detach() * (M @ v) + (alpha @ M @ v).detach() * (M @ w).detach())
    (fd,) = fd_hvp(loss, [w], [alpha], [v], eps_scale=0.01)
    (ex,) = exact_hvp(loss, [w], [alpha], [v])
    torch.testing.assert_close(ex, closed, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fd, closed, rtol=1e-9, atol=1e-9)
    # the precedence bug of two ports (-η·ε/2 for -η/(2ε)) is off by ε²: caught here
    eps = 0.01 / float(v.norm())
    assert not torch.allclose(fd * eps * eps, closed, rtol=0.5)


def test_finite_difference_hvp_converges_to_exact_on_the_supernet(setup):
    """On the ReLU supernet the FD product converges to the exact one as ε -> 0 (float64).

    At DARTS' ε = 0.01/‖v‖ the two differ on this tiny network: the perturbation crosses
    ReLU and max-pool kinks, where the exact product (the derivative almost everywhere)
    sees no curvature. That is why ``--hvp exact`` exists."""
    model, _, _, (x_t, y_t, x_v, y_v) = setup
    weights, alphas = model.weight_parameters(), model.arch_parameters()
    g = torch.Generator().manual_seed(3)
    v = [torch.randn(w.shape, generator=g, dtype=w.dtype) for w in weights]
    before = [w.detach().clone() for w in weights]

    def loss():
        return F.cross_entropy(model(x_t), y_t)

    exact = exact_hvp(loss, weights, alphas, v)
    assert _flat(exact).norm() > 1e-6
    assert _rel_err(fd_hvp(loss, weights, alphas, v, eps_scale=1e-7), exact) < 1e-6
    assert all(torch.equal(w, b) for w, b in zip(weights, before)), "weights not restored bit-exactly"


def _direct_second_order_gradient(model, w_opt, x_t, y_t, x_v, y_v, eta):
    """∇_α L_val(w'(α), α) with w'(α) = w - η(m + ∇_w L_train(w, α) + λw), by autograd through the step."""
    names = [n for n, p in model.named_parameters() if not n.startswith("alphas")]
    weights = dict((n, p) for n, p in model.named_parameters() if n in names)
    alphas = {n: p for n, p in model.named_parameters() if n.startswith("alphas")}
    params = {**weights, **alphas}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    loss_t = F.cross_entropy(functional_call(model, (params, buffers), (x_t,)), y_t)
    g_w = torch.autograd.grad(loss_t, list(weights.values()), create_graph=True, allow_unused=True)
    w_prime = {}
    for (n, w), g in zip(weights.items(), g_w):
        g = torch.zeros_like(w) if g is None else g
        buf = w_opt.state[w].get("momentum_buffer")
        m = MOMENTUM * buf if buf is not None else torch.zeros_like(w)
        w_prime[n] = w.detach() - eta * (m + g + WD * w.detach())
    loss_v = F.cross_entropy(functional_call(model, ({**w_prime, **alphas}, buffers), (x_v,)), y_v)
    return list(torch.autograd.grad(loss_v, list(alphas.values())))


@pytest.mark.parametrize("hvp, eps_scale, tol", [("exact", 0.01, 1e-9), ("fd", 1e-7, 1e-5)])
def test_second_order_gradient_matches_autograd_through_the_unrolled_step(setup, hvp, eps_scale, tol):
    model, w_opt, a_opt, (x_t, y_t, x_v, y_v) = setup
    arch = Architect(
        model, w_opt, a_opt, order=2, hvp=hvp, momentum=MOMENTUM, weight_decay=WD, eps_scale=eps_scale
    )
    before = [p.detach().clone() for p in model.parameters()]
    got, _, _ = arch.gradient(x_t, y_t, x_v, y_v, eta=LR)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before)), "weights not restored"
    want = _direct_second_order_gradient(model, w_opt, x_t, y_t, x_v, y_v, LR)
    assert _rel_err(got, want) < tol
    # and the second-order term matters here: it is not just the first-order gradient
    first, _, _ = Architect(model, w_opt, a_opt, order=1).gradient(x_t, y_t, x_v, y_v, eta=LR)
    assert _rel_err(first, want) > 10 * tol


def test_xi_zero_reduces_second_order_to_first_order(setup):
    model, w_opt, a_opt, (x_t, y_t, x_v, y_v) = setup
    second, _, _ = Architect(model, w_opt, a_opt, order=2).gradient(x_t, y_t, x_v, y_v, eta=0.0)
    first, _, _ = Architect(model, w_opt, a_opt, order=1).gradient(x_t, y_t, x_v, y_v, eta=LR)
    for s, f in zip(second, first):
        torch.testing.assert_close(s, f, rtol=1e-12, atol=1e-15)


def test_virtual_step_is_the_next_sgd_step_with_momentum_and_weight_decay(setup):
    model, w_opt, _, (x_t, y_t, _, _) = setup
    weights = model.weight_parameters()
    saved = [w.detach().clone() for w in weights]
    state = {k: v.clone() for k, v in ((id(w), w_opt.state[w]["momentum_buffer"]) for w in weights)}
    loss = F.cross_entropy(model(x_t), y_t)
    grads = torch.autograd.grad(loss, weights)
    predicted = unrolled_weights(weights, grads, w_opt, LR, MOMENTUM, WD)
    for w, g in zip(weights, grads):
        w.grad = g.clone()
    w_opt.step()
    for w, p in zip(weights, predicted):
        torch.testing.assert_close(w.detach(), p, rtol=0, atol=1e-14)
    with torch.no_grad():  # undo the real step for the other tests
        for w, s in zip(weights, saved):
            w.copy_(s)
            w_opt.state[w]["momentum_buffer"].copy_(state[id(w)])
        w_opt.zero_grad(set_to_none=True)


def test_first_order_step_moves_alpha_along_minus_the_validation_gradient(setup):
    model, w_opt, _, (x_t, y_t, x_v, y_v) = setup
    alphas = model.arch_parameters()
    sgd = torch.optim.SGD(alphas, lr=1e-3)
    before = [a.detach().clone() for a in alphas]
    arch = Architect(model, w_opt, sgd, order=1)
    grads, _, _ = arch.gradient(x_t, y_t, x_v, y_v, eta=LR)
    arch.step(x_t, y_t, x_v, y_v, eta=LR)
    for a, b, g in zip(alphas, before, grads):
        torch.testing.assert_close(a.detach(), b - 1e-3 * g, rtol=0, atol=1e-14)
    with torch.no_grad():
        for a, b in zip(alphas, before):
            a.copy_(b)
