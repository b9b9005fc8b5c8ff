"""The DARTS supernet (SPEC 1.1-1.4) and genotype derivation (SPEC 1.7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cellnas.errors import CellnasError
from cellnas.genotype import PRIMITIVES
from cellnas.supernet import MixedOp, SearchNetwork, SearchSpace, derive, derive_cell, edge_index

P = {name: i for i, name in enumerate(PRIMITIVES)}


# -- search space ----------------------------------------------------------------------------------------


def test_n_edges():
    assert SearchSpace().n_edges == 14
    assert SearchSpace(n_nodes=2).n_edges == 5
    assert SearchSpace(n_nodes=5).n_edges == 20


def test_edge_index_follows_spec_offsets():
    assert [edge_index(i, 2) for i in range(2)] == [0, 1]
    assert [edge_index(i, 3) for i in range(3)] == [2, 3, 4]
    assert edge_index(0, 4) == 5 and edge_index(0, 5) == 9 and edge_index(4, 5) == 13


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"ops": ("none", "sep_conv_9x9")}, "sep_conv_3x3"),
        ({"ops": ("none",)}, "other than 'none'"),
        ({"ops": ("skip_connect", "skip_connect")}, "repeat"),
        ({"n_nodes": 0}, "n_nodes"),
        ({"k": 3}, "k"),
        ({"k": 0}, "k"),
    ],
)
def test_space_validation(kwargs, needle):
    with pytest.raises(CellnasError, match=needle):
        SearchSpace(**kwargs)


def test_space_without_none_is_allowed():
    assert SearchSpace(ops=("skip_connect", "sep_conv_3x3")).n_ops == 2


# -- network ---------------------------------------------------------------------------------------------


def test_supernet_parameter_count_matches_darts_log():
    # SPEC 1.4: "param size = 1.930618MB" (alpha excluded), C=16, 8 cells, 10 classes
    net = SearchNetwork(C=16, num_classes=10, layers=8)
    assert sum(p.numel() for p in net.weight_parameters()) == 1_930_618


def test_mixed_op_pools_get_non_affine_bn_and_all_ops_are_non_affine():
    m = MixedOp(4, 1)
    assert len(m._ops) == len(PRIMITIVES)
    pool = m._ops[P["max_pool_3x3"]]
    assert isinstance(pool[1], torch.nn.BatchNorm2d) and not pool[1].affine
    assert all(not bn.affine for bn in m.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    assert sum(p.numel() for p in m.parameters()) == sum(
        p.numel() for i in (4, 5, 6, 7) for p in m._ops[i].parameters()
    )


def test_mixed_op_is_weighted_sum():
    m = MixedOp(4, 1).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 6, generator=g)
    w = torch.softmax(torch.randn(8, generator=g), 0)
    expected = sum(w[k] * op(x) for k, op in enumerate(m._ops))
    # float32 sums in another order: compare with a tolerance, not bit for bit (values near 0
    # fail atol=1e-8 on some CPUs; CI caught one)
    torch.testing.assert_close(m(x, w), expected, rtol=1e-5, atol=1e-6)


def tiny(**kw) -> SearchNetwork:
    kw.setdefault("seed", 0)
    return SearchNetwork(C=4, num_classes=3, layers=3, **kw)


def test_alphas_are_registered_parameters_in_state_dict():
    net = tiny()
    sd = net.state_dict()
    assert sd["alphas_normal"].shape == (14, 8) and sd["alphas_reduce"].shape == (14, 8)
    arch = {id(p) for p in net.arch_parameters()}
    assert arch == {id(net.alphas_normal), id(net.alphas_reduce)}
    assert not arch & {id(p) for p in net.weight_parameters()}
    assert len(net.weight_parameters()) + 2 == len(list(net.parameters()))
    assert net.alphas_normal.abs().max() < 1e-2  # 1e-3 * N(0, 1)


def test_reduction_cells_and_channel_bookkeeping():
    net = SearchNetwork(C=4, num_classes=3, layers=8, space=SearchSpace(n_nodes=2))
    assert [c.reduction for c in net.cells] == [i in (2, 5) for i in range(8)]
    assert net.classifier.in_features == 2 * 4 * 4  # n_nodes * (C doubled twice)
    flat = SearchNetwork(C=4, num_classes=3, layers=4, all_normal=True)
    assert not any(c.reduction for c in flat.cells)


def test_seed_fixes_alpha_and_weights_without_touching_global_rng():
    state = torch.get_rng_state()
    a, b, c = tiny(seed=1), tiny(seed=1), tiny(seed=2)
    assert torch.equal(state, torch.get_rng_state())
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.alphas_normal, c.alphas_normal)


def test_every_weight_and_alpha_gets_a_gradient():
    net = tiny()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    loss = F.cross_entropy(net(x), torch.tensor([0, 2]))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for a in net.arch_parameters():
        assert a.grad.abs().sum() > 0
        # every op column of every edge moves alpha (none included: d softmax couples the row)
        assert (a.grad.abs() > 0).all()


def test_all_normal_leaves_alphas_reduce_without_gradient():
    net = tiny(all_normal=True, space=SearchSpace(n_nodes=2))
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    assert net.alphas_normal.grad is not None and net.alphas_reduce.grad is None


def test_softmax_is_taken_once_per_cell_type_per_forward(monkeypatch):
    net = tiny()
    calls = []
    real = F.softmax

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "softmax", counting)
    net(torch.randn(2, 3, 8, 8))
    assert len(calls) == 2


def test_external_weights_replace_softmax_alpha():
    net = tiny().eval()
    x = torch.randn(2, 3, 8, 8)
    wn, wr = F.softmax(net.alphas_normal, -1), F.softmax(net.alphas_reduce, -1)
    assert torch.allclose(net(x), net(x, weights_normal=wn, weights_reduce=wr))
    # all weight on 'none': every cell outputs zeros, so the logits are the classifier bias
    zero = torch.zeros(14, 8)
    zero[:, P["none"]] = 1.0
    logits = net(x, weights_normal=zero, weights_reduce=zero)
    assert torch.allclose(logits, net.classifier.bias.expand(2, -1))


def test_in_channels_for_grey_images():
    net = SearchNetwork(C=4, num_classes=10, layers=2, in_channels=1, space=SearchSpace(n_nodes=1))
    assert net.stem[0].in_channels == 1
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_genotype_of_network_uses_space():
    space = SearchSpace(n_nodes=2)
    net = SearchNetwork(C=4, layers=3, space=space, seed=0)
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_normal[:, P["sep_conv_5x5"]] = 2.0
    g = net.genotype()
    assert g.normal.pairs == [("sep_conv_5x5", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 0), ("sep_conv_5x5", 1)]
    assert g.normal.concat == (2, 3)


# -- derive (SPEC 1.7) -----------------------------------------------------------------------------------


def darts_reference_parse(weights: np.ndarray, steps: int = 4) -> list:
    """quark0/darts cnn/model_search.py Network.genotype()._parse, transcribed."""
    gene = []
    n = 2
    start = 0
    for i in range(steps):
        end = start + n
        W = weights[start:end].copy()
        edges = sorted(
            range(i + 2),
            key=lambda x: -max(W[x][k] for k in range(len(W[x])) if k != PRIMITIVES.index("none")),
        )[:2]
        for j in edges:
            k_best = None
            for k in range(len(W[j])):
                if k != PRIMITIVES.index("none"):
                    if k_best is None or W[j][k] > W[j][k_best]:
                        k_best = k
            gene.append((PRIMITIVES[k_best], j))
        start = end
        n += 1
    return gene


def softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_derive_matches_darts_reference_on_random_alpha(seed):
    rng = np.random.default_rng(seed)
    an, ar = rng.normal(size=(14, 8)), rng.normal(size=(14, 8))
    g = derive(an, ar)
    assert g.normal.pairs == darts_reference_parse(softmax(an))
    assert g.reduce.pairs == darts_reference_parse(softmax(ar))
    assert g.normal.concat == (2, 3, 4, 5)


def test_derive_accepts_torch_and_numpy():
    a = torch.randn(14, 8, generator=torch.Generator().manual_seed(0))
    assert derive(a, a) == derive(a.numpy(), a.numpy())


def test_derive_keeps_strongest_edge_first():
    a = np.zeros((5, 8))
    a[0, P["sep_conv_3x3"]] = 1.0  # node 2: edge from 0
    a[1, P["dil_conv_3x3"]] = 2.0  # node 2: edge from 1, stronger
    a[3, P["max_pool_3x3"]] = 1.0  # node 3: from 1
    a[4, P["skip_connect"]] = 3.0  # node 3: from 2, strongest
    cell = derive_cell(a, n_nodes=2)
    assert cell.pairs == [("dil_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2), ("max_pool_3x3", 1)]


def test_derive_edge_ties_go_to_lower_input():
    a = np.zeros((14, 8))  # every edge and op equal
    cell = derive_cell(a)
    assert [src for _, src in cell.pairs] == [0, 1] * 4
    # op ties go to the lowest non-none primitive
    assert set(cell.ops) == {"max_pool_3x3"}


def test_derive_op_ties_go_to_lower_primitive_index():
    a = np.zeros((5, 8))
    a[:, P["sep_conv_5x5"]] = 1.0
    a[:, P["sep_conv_3x3"]] = 1.0
    assert set(derive_cell(a).ops) == {"sep_conv_3x3"}


def test_derive_none_strongest_on_an_edge():
    a = np.zeros((5, 8))
    # node 2 has only two edges: both are kept, and 'none' is never chosen even where it dominates
    a[0, P["none"]] = 10.0
    a[0, P["avg_pool_3x3"]] = 1.0
    # node 3: edge from 0 has 'none' dominating; sep_conv_3x3 is its best real op.
    # Strength uses softmax over ALL ops (none included): e^3 / (e^5 + e^3 + 6) ~ 0.115,
    # below the uniform edge from 2 (1/8) and the edge from 1 (e / (e + 7) ~ 0.28).
    # With none excluded from the softmax the edge from 0 would win (e^3 / (e^3 + 6) ~ 0.77).
    a[2, P["none"]] = 5.0
    a[2, P["sep_conv_3x3"]] = 3.0
    a[3, P["sep_conv_5x5"]] = 1.0
    cell = derive_cell(a)
    assert cell.pairs[:2] == [("max_pool_3x3", 1), ("avg_pool_3x3", 0)]
    assert cell.pairs[2:] == [("sep_conv_5x5", 1), ("max_pool_3x3", 2)]
    assert "none" not in cell.ops


def test_derive_k1_keeps_one_input_per_node():
    rng = np.random.default_rng(0)
    an = rng.normal(size=(14, 8))
    g = derive(an, an, SearchSpace(k=1))
    assert g.k == 1 and g.normal.n_nodes == 4
    ref = darts_reference_parse(softmax(an))
    assert g.normal.pairs == [ref[2 * j] for j in range(4)]  # the strongest of each node's top 2


def test_derive_k3_keeps_all_predecessors_of_small_nodes():
    a = np.zeros((14, 8))
    for e, strength in enumerate(np.linspace(0, 1, 14)):
        a[e, P["sep_conv_3x3"]] = strength  # later inputs are stronger within each node
    cell = derive_cell(a, k=3)
    assert [len(node) for node in cell.nodes] == [2, 3, 3, 3]
    assert [src for _, src in cell.nodes[0]] == [1, 0]
    assert [src for _, src in cell.nodes[1]] == [2, 1, 0]
    assert [src for _, src in cell.nodes[3]] == [4, 3, 2]


@pytest.mark.parametrize("n_nodes", [2, 5])
def test_derive_other_node_counts(n_nodes):
    space = SearchSpace(n_nodes=n_nodes)
    a = np.random.default_rng(n_nodes).normal(size=(space.n_edges, 8))
    g = derive(a, a, space)
    assert g.normal.n_nodes == n_nodes and g.k == 2
    assert g.normal.concat == tuple(range(2, n_nodes + 2))
    for j, node in enumerate(g.normal.nodes):
        srcs = [src for _, src in node]
        assert len(set(srcs)) == 2 and max(srcs) < j + 2


def test_derive_custom_op_list_without_none():
    space = SearchSpace(ops=("skip_connect", "sep_conv_3x3"), n_nodes=2)
    a = np.zeros((5, 2))
    a[:, 1] = 1.0
    assert set(derive(a, a, space).normal.ops) == {"sep_conv_3x3"}


def test_derive_rejects_wrong_shapes():
    with pytest.raises(CellnasError):
        derive(np.zeros((13, 8)), np.zeros((13, 8)))
    with pytest.raises(CellnasError):
        derive(np.zeros((14, 7)), np.zeros((14, 7)))
    with pytest.raises(CellnasError):
        derive_cell(np.zeros(14))
