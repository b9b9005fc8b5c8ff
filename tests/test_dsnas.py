"""DSNAS search mode (Hu et al., CVPR 2020; Xie et al., AISTATS 2021, SPEC 4): the sampled child network, its
recorded cost, the α estimator, uniform sampling with edge ablations, exact resume, the CLI and its refusals."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.cli import main
from cellnas.errors import CellnasError
from cellnas.search import search
from cellnas.search.config import PRESETS, resolve_config
from cellnas.search.dsnas import ChildSampler, DsnasSearch, alpha_gradient
from cellnas.search.wiring import ControlledSupernet, CostRecorder
from cellnas.supernet import SearchNetwork, SearchSpace, one_hot_choice

# none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5
OPS = list(SearchSpace().ops)
# 3 nodes, 9 edges: node 2 <- e0, e1; node 3 <- e2, e3, e4; node 4 <- e5 .. e8. Node 2 is `none` on both inputs
# (a zero node, read by later edges); the reduce child runs the stride-2 skip (FactorizedReduce) and both pools
CHOICE_NORMAL = (0, 0, 4, 3, 7, 1, 0, 6, 2)
CHOICE_REDUCE = (0, 0, 3, 1, 4, 2, 5, 0, 6)
TINY = dict(channels=4, layers=3, batch_size=16, epochs=2, steps_per_epoch=3, progress=False, plots=False)


def _net(seed: int = 0, **kw) -> SearchNetwork:
    """C=4, 3 cells (normal, reduce, reduce), 3 nodes, 1 input channel, float64."""
    net = SearchNetwork(C=4, num_classes=4, layers=3, space=SearchSpace(n_nodes=3), in_channels=1, seed=seed,
                        **kw).double()  # fmt: skip
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 0.5)
    return net


def _batch(n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def _one_hot_alphas(net: SearchNetwork, choice_normal, choice_reduce) -> None:
    """α whose softmax is exactly one-hot on the choices (exp(-2e4) is 0 in float64)."""
    with torch.no_grad():
        for a, choice in ((net.alphas_normal, choice_normal), (net.alphas_reduce, choice_reduce)):
            a.fill_(-1e4)
            for e, k in enumerate(choice):
                a[e, k] = 1e4


def _batch_norms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


# -- (a) the sampled forward is the discrete child ------------------------------------------------------------------


@pytest.mark.parametrize("train", [True, False], ids=["train-mode", "eval-mode"])
def test_sampled_child_equals_the_supernet_with_exactly_one_hot_weights(train):
    net = _net()
    x, _ = _batch()
    supernet = copy.deepcopy(net)
    _one_hot_alphas(supernet, CHOICE_NORMAL, CHOICE_REDUCE)
    np.testing.assert_array_equal(F.softmax(supernet.alphas_normal, -1).detach().numpy(),
                                  one_hot_choice(CHOICE_NORMAL, len(OPS)).numpy())  # fmt: skip
    net.train(train)
    supernet.train(train)
    child = net(x, choice_normal=CHOICE_NORMAL, choice_reduce=CHOICE_REDUCE)
    mixed = supernet(x)  # every op runs, weighted 0 or 1
    assert child.abs().max() > 0
    torch.testing.assert_close(child, mixed, rtol=1e-10, atol=1e-12)


def test_a_removed_edge_runs_nothing_and_matches_an_all_zero_weight_row():
    net = _net()
    x, _ = _batch()
    normal = (-1, 4, 0, -1, 5, 3, 0, 0, 6)  # edges 0 and 3 removed
    z_normal = one_hot_choice(normal, len(OPS), net.alphas_normal)
    z_reduce = one_hot_choice(CHOICE_REDUCE, len(OPS), net.alphas_reduce)
    assert z_normal[0].sum() == 0 and z_normal[3].sum() == 0
    child = net(x, choice_normal=normal, choice_reduce=CHOICE_REDUCE)
    mixed = copy.deepcopy(net)(x, weights_normal=z_normal, weights_reduce=z_reduce)
    torch.testing.assert_close(child, mixed, rtol=1e-10, atol=1e-12)


def test_only_the_chosen_op_of_each_edge_runs():
    net = _net()
    x, _ = _batch()
    net(x, choice_normal=CHOICE_NORMAL, choice_reduce=CHOICE_REDUCE)
    ran_any = False
    for cell in net.cells:
        choice = CHOICE_REDUCE if cell.reduction else CHOICE_NORMAL
        for e, mixed in enumerate(cell._ops):
            for k, op in enumerate(mixed._ops):
                bns = _batch_norms(op)
                if not bns:  # none and the stride-1 skip_connect hold no batch norm
                    continue
                ran = any(int(bn.num_batches_tracked) > 0 for bn in bns)
                assert ran == (k == choice[e]), (cell.reduction, e, OPS[k])
                ran_any |= ran
    assert ran_any


# -- (b) the recorded cost ------------------------------------------------------------------------------------------


def test_recorded_cost_is_dL_dZ_of_the_chosen_op_none_is_zero_and_unchosen_ops_get_no_count():
    net = _net()
    x, y = _batch()
    model = ControlledSupernet(copy.deepcopy(net)).double()
    recorder = CostRecorder(model, sampled=True)
    z_n = one_hot_choice(CHOICE_NORMAL, len(OPS), net.alphas_normal).requires_grad_()
    z_r = one_hot_choice(CHOICE_REDUCE, len(OPS), net.alphas_reduce).requires_grad_()
    recorder.begin("train")
    loss = F.cross_entropy(model(x, weights_normal=z_n, weights_reduce=z_r, choice_normal=CHOICE_NORMAL,
                                 choice_reduce=CHOICE_REDUCE), y)  # fmt: skip
    loss.backward()
    recorder.end(None)
    # independent: the whole supernet (every op runs) with the same one-hot Z as leaves, the batch-summed loss;
    # its dL/dZ_k = <dL/dx_j, o_k(x_i)> for every op, run or not
    leaf_n = one_hot_choice(CHOICE_NORMAL, len(OPS), net.alphas_normal).requires_grad_()
    leaf_r = one_hot_choice(CHOICE_REDUCE, len(OPS), net.alphas_reduce).requires_grad_()
    F.cross_entropy(copy.deepcopy(net)(x, weights_normal=leaf_n, weights_reduce=leaf_r), y,
                    reduction="sum").backward()  # fmt: skip
    k_none = OPS.index("none")
    for cell, choice, leaf in (("normal", CHOICE_NORMAL, leaf_n), ("reduce", CHOICE_REDUCE, leaf_r)):
        sums = recorder.sums[("train", cell)]
        onehot = one_hot_choice(choice, len(OPS)).numpy()
        expected = leaf.grad.numpy() * onehot  # the chosen op's cost only
        np.testing.assert_allclose(sums, expected, rtol=1e-8, atol=1e-12)
        assert np.abs(leaf.grad.numpy() * (1 - onehot)).max() > 0  # the ops not run do have a cost in the supernet
        np.testing.assert_array_equal(recorder.chosen[("train", cell)], onehot)
        assert all(sums[e, k_none] == 0 for e, k in enumerate(choice) if k == k_none)
    summary = recorder.epoch_summary()["train"]["normal"]
    assert summary["count"] == 1
    assert summary["chosen"] == one_hot_choice(CHOICE_NORMAL, len(OPS)).long().tolist()
    for e, k in enumerate(CHOICE_NORMAL):
        assert [j for j, v in enumerate(summary["mean"][e]) if v is not None] == [k]  # unchosen: no mean
        if k == k_none:
            assert summary["mean"][e][k] == 0.0  # chosen `none`: counted, cost 0
    # per cell (reduce: two cells share Z): the means of the one step, NaN for the ops not chosen; they add up
    per_cell = recorder.cell_history[-1][("train", "reduce")]
    chosen = one_hot_choice(CHOICE_REDUCE, len(OPS)).numpy() > 0
    assert per_cell.shape == (2, 9, len(OPS)) and np.isnan(per_cell[:, ~chosen]).all()
    np.testing.assert_allclose(per_cell[:, chosen].sum(0) * 1.0, leaf_r.grad.numpy()[chosen], rtol=1e-8, atol=1e-12)


# -- (c) the α estimator --------------------------------------------------------------------------------------------


def test_alpha_gradient_formula_on_a_hand_checked_case():
    z = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.25, 0.25, 0.5], [0.1, 0.8, 0.1]])
    reward = torch.tensor([-2.0, 8.0, 0.5, 3.0])  # 8 is clamped to 5
    free = torch.tensor([True, True, True, False])  # edge 3: ablated, no gradient
    got = alpha_gradient(z, p, reward, reward_clip=5.0, free=free)
    expected = torch.tensor([
        [-2 * -0.2, -2 * 0.5, -2 * -0.3],  # R (Z - p) = -2 * (-0.2, 0.5, -0.3)
        [5 * 0.4, 5 * -0.3, 5 * -0.1],
        [0.5 * -0.25, 0.5 * -0.25, 0.5 * 0.5],
        [0.0, 0.0, 0.0],
    ])  # fmt: skip
    torch.testing.assert_close(got, expected)
    # descent raises the chosen op exactly when its cost is negative (SPEC 4's unified view)
    assert got[0, 1] < 0 and got[1, 0] > 0


def test_dsnas_step_sets_alpha_grad_to_the_clamped_reward_times_z_minus_p():
    net = _net()
    x, y = _batch()
    reference = copy.deepcopy(net)
    dsnas = DsnasSearch(net, seed=0, reward_clip=0.02, arch_clip=float("inf"))
    dsnas.sampler.sample = lambda alphas: {"normal": CHOICE_NORMAL, "reduce": CHOICE_REDUCE}
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.0)
    a_opt = torch.optim.SGD(net.arch_parameters(), lr=0.0)  # steps without moving α: its .grad stays readable
    loss, _ = dsnas.step(x, y, w_opt, a_opt)
    # independent: the chosen op's cost (batch-mean loss) summed over the cells, from the whole supernet
    leaf_n = one_hot_choice(CHOICE_NORMAL, len(OPS), net.alphas_normal).requires_grad_()
    leaf_r = one_hot_choice(CHOICE_REDUCE, len(OPS), net.alphas_reduce).requires_grad_()
    ref_loss = F.cross_entropy(reference(x, weights_normal=leaf_n, weights_reduce=leaf_r), y)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    clipped = []
    for a, leaf in ((net.alphas_normal, leaf_n), (net.alphas_reduce, leaf_r)):
        z = leaf.detach()
        reward = (leaf.grad * z).sum(-1).clamp(-0.02, 0.02)
        p = F.softmax(a.detach(), -1)
        torch.testing.assert_close(a.grad, reward[:, None] * (z - p), rtol=1e-8, atol=1e-12)
        # the reference's form: the gradient of Σ_e R_e log p_e(Z_e), R held constant
        alpha = a.detach().clone().requires_grad_()
        (reward * (F.log_softmax(alpha, -1) * z).sum(-1)).sum().backward()
        torch.testing.assert_close(a.grad, alpha.grad, rtol=1e-8, atol=1e-12)
        clipped.append(bool(((leaf.grad * z).sum(-1).abs() > 0.02).any()))
    assert any(clipped)  # the clamp was exercised
    # every weight got a gradient, zero for the ops the child did not run (SGD's momentum and decay reach them)
    assert all(p.grad is not None for p in net.weight_parameters())
    unused = net.cells[0]._ops[0]._ops[OPS.index("sep_conv_5x5")]
    assert all(float(p.grad.abs().max()) == 0 for p in unused.parameters())
    used = net.cells[0]._ops[2]._ops[OPS.index("sep_conv_3x3")]
    assert any(float(p.grad.abs().max()) > 0 for p in used.parameters())


def test_the_reference_form_is_the_gradient_of_the_references_summed_normal_loss():
    # SNAS-Series Analysis/snas/model_search.py: normal_one_hot_prob is summed over the edges into one number, and
    # (log(normal_one_hot_prob) + log(reduce_one_hot_prob)).sum() counts its log once per reduce edge; the α gradient
    # is then multiplied row by row by the clamped reward. Autograd of that expression, against alpha_gradient.
    g = torch.Generator().manual_seed(3)
    alpha = torch.randn(5, 4, generator=g).requires_grad_()
    z = one_hot_choice([0, 3, 1, 1, 2], 4, alpha)
    reward = torch.tensor([-2.0, 8.0, 0.5, 3.0, -0.7])
    normal_one_hot_prob = (z * F.softmax(alpha, -1)).sum(-1).sum()
    reduce_one_hot_prob = torch.full((5,), 0.3)  # the reduce cell's vector: 5 edges, α-free here
    (torch.log(normal_one_hot_prob) + torch.log(reduce_one_hot_prob)).sum().backward()
    expected = alpha.grad * reward.clamp(-5, 5)[:, None]
    p = F.softmax(alpha.detach(), -1)
    got = alpha_gradient(z, p, reward, 5.0, form="reference")
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(got, alpha_gradient(z, p, reward, 5.0))  # it is not the per-edge form
    # at uniform α every p_e(Z_e) is equal: the two forms agree
    u = torch.full((5, 4), 0.25)
    torch.testing.assert_close(alpha_gradient(z, u, reward, form="reference"), alpha_gradient(z, u, reward))
    # ablated edges: no row, and not in the sum S
    free = torch.tensor([True, False, True, True, False])
    ref = alpha_gradient(z, p, reward, form="reference", free=free)
    assert float(ref[~free].abs().max()) == 0
    chosen = (z * p).sum(-1)
    scale = 5 * chosen / chosen[free].sum()
    torch.testing.assert_close(ref[free], (reward.clamp(-5, 5) * scale)[free, None] * (z - p)[free])
    with pytest.raises(ValueError, match="per-edge, reference"):
        alpha_gradient(z, p, reward, form="summed")


def test_dsnas_alpha_loss_reference_changes_the_normal_cell_only():
    x, y = _batch()
    grads = {}
    for form in ("per-edge", "reference"):
        torch.manual_seed(0)  # the same α (normal(0, 0.5): unequal p_e(Z_e)) for both forms
        net = _net()
        dsnas = DsnasSearch(net, seed=0, arch_clip=float("inf"), alpha_loss=form)
        dsnas.sampler.sample = lambda alphas: {"normal": CHOICE_NORMAL, "reduce": CHOICE_REDUCE}
        a_opt = torch.optim.SGD(net.arch_parameters(), lr=0.0)
        dsnas.step(x, y, torch.optim.SGD(net.weight_parameters(), lr=0.0), a_opt)
        grads[form] = (net.alphas_normal.grad.clone(), net.alphas_reduce.grad.clone())
    assert not torch.allclose(grads["per-edge"][0], grads["reference"][0])
    torch.testing.assert_close(grads["per-edge"][1], grads["reference"][1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="alpha_loss must be one of per-edge, reference"):
        DsnasSearch(_net(), seed=0, alpha_loss="sum")
    with pytest.raises(CellnasError, match='"dsnas_alpha_loss" in the config must be per-edge or reference'):
        resolve_config(None, {"mode": "dsnas", "dsnas_alpha_loss": "sum"})
    assert resolve_config(None, {"mode": "dsnas"}).dsnas_alpha_loss == "per-edge"


def test_the_alpha_gradient_norm_is_clipped_to_arch_clip():
    net = _net()
    x, y = _batch()
    dsnas = DsnasSearch(net, seed=0, arch_clip=1e-6)
    a_opt = torch.optim.SGD(net.arch_parameters(), lr=0.0)
    dsnas.step(x, y, torch.optim.SGD(net.weight_parameters(), lr=0.0), a_opt)
    norm = torch.cat([a.grad.flatten() for a in net.arch_parameters()]).norm()
    assert float(norm) == pytest.approx(1e-6, rel=1e-3)


@pytest.mark.parametrize("eval_bn", ["batch", "running"])
def test_evaluating_the_argmax_child_uses_the_chosen_bn_statistics_and_changes_no_buffer(eval_bn):
    net = _net()
    x, y = _batch()
    dsnas = DsnasSearch(net, seed=0, eval_bn=eval_bn)
    dsnas.step(x, y, torch.optim.SGD(net.weight_parameters(), lr=0.1), torch.optim.SGD(net.arch_parameters(), lr=0.1))
    child = dsnas.argmax_child()
    assert child["normal"] == tuple(net.alphas_normal.argmax(-1).tolist())
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reference = copy.deepcopy(net).train(eval_bn == "batch")
    with torch.no_grad(), dsnas.evaluation():
        got = dsnas.forward(x, child)
    assert not net.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    with torch.no_grad():
        expected = reference(x, choice_normal=child["normal"], choice_reduce=child["reduce"])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


# -- (d) sampling: from α, uniform, ablations -------------------------------------------------------------------------


def test_samples_follow_softmax_alpha_unless_uniform_and_ablations_always_hold():
    n_edges, n_ops, draws = 5, 8, 4000
    extreme = torch.full((n_edges, n_ops), -30.0)
    extreme[:, 4] = 30.0  # softmax(α) is sep_conv_3x3 with probability 1 - 1e-26
    removed, fixed = {"normal": [0, 2]}, {"normal": {1: 7}}
    counts = {}
    for rest in ("alpha", "uniform"):
        sampler = ChildSampler(n_edges, n_ops, removed, fixed, rest=rest, seed=3)
        c = np.zeros((n_edges, n_ops), int)
        for _ in range(draws):
            child = sampler.sample({"normal": extreme})["normal"]
            assert child[0] == -1 and child[2] == -1 and child[1] == 7
            for e in (3, 4):
                c[e, child[e]] += 1
        counts[rest] = c
    assert (counts["alpha"][3:, 4] == draws).all()  # α decides
    expected, sd = draws / n_ops, np.sqrt(draws * (1 / n_ops) * (1 - 1 / n_ops))
    assert np.abs(counts["uniform"][3:] - expected).max() < 5 * sd  # α left out: every op about 1/8
    # the categorical sample itself matches softmax(α) (moderate α)
    alphas = torch.tensor([[0.0, 1.0, 2.0, -1.0]])
    sampler = ChildSampler(1, 4, seed=4)
    hits = np.bincount([sampler.sample({"normal": alphas})["normal"][0] for _ in range(draws)], minlength=4)
    p = F.softmax(alphas[0].double(), -1).numpy()
    assert np.abs(hits - draws * p).max() < 5 * np.sqrt(draws * p * (1 - p)).max()


def test_uniform_ablation_run_never_samples_removed_edges_always_the_fixed_op_and_leaves_alpha(tmp_path):
    out = tmp_path / "ablation"
    result = search(out=out, preset="wiring-dsnas-ablation", dataset="digits", channels=4, batch_size=16, epochs=2,
                    steps_per_epoch=4, progress=False, plots=False)  # fmt: skip
    assert result.config.sample_rest == "uniform" and result.config.layers == 1
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    k_fixed = OPS.index("sep_conv_5x5")
    for m in metrics:
        sampled = np.array(m["sampled"]["normal"])  # (5 edges, 8 ops)
        assert sampled[[0, 2]].sum() == 0  # removed: 0-2 and 0-3
        assert sampled[1, k_fixed] == 4 and sampled[1].sum() == 4  # fixed 1-2: every step
        assert (sampled[[3, 4]].sum(1) == 4).all()
        chosen = np.array(m["wiring_cost"]["train"]["normal"]["chosen"])
        np.testing.assert_array_equal(chosen, sampled)
        assert m["wiring_cost"]["train"]["normal"]["mean"][1][k_fixed] is not None
    hist = np.load(out / "alphas_history.npz")["normal"]
    np.testing.assert_array_equal(hist[0], hist[-1])  # α is not updated under uniform sampling


# -- (e) resume -------------------------------------------------------------------------------------------------------


def _records(run_dir):
    metrics = [{k: v for k, v in m.items() if k != "time_s"} for m in map(json.loads, open(run_dir / "metrics.jsonl"))]
    return metrics, dict(np.load(run_dir / "alphas.npz")), dict(np.load(run_dir / "wiring.npz"))


@pytest.fixture(scope="module")
def dsnas_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("dsnas") / "run"
    search(out=out, mode="dsnas", record_wiring=True, checkpoint_every=1, **TINY)
    return out


@pytest.mark.parametrize("crash_at", [2, 3], ids=["mid-epoch", "epoch-boundary"])
def test_a_resumed_dsnas_run_equals_the_uninterrupted_one(dsnas_reference, tmp_path, crash_search, crash_at):
    out = tmp_path / "run"
    crash_search(out, crash_at, mode="dsnas", record_wiring=True, checkpoint_every=1, **TINY)
    search(resume=out)
    (m_a, alphas_a, wiring_a), (m_b, alphas_b, wiring_b) = _records(dsnas_reference), _records(out)
    assert m_a == m_b
    assert "sampled" in m_a[0] and "wiring_cost" in m_a[0]
    for k in alphas_a:
        np.testing.assert_array_equal(alphas_a[k], alphas_b[k])
    assert set(wiring_a) == set(wiring_b) and "chosen_train_normal" in wiring_a
    for k in wiring_a:
        np.testing.assert_array_equal(wiring_a[k], wiring_b[k])
    # the two epochs sampled different children (the sampler's stream moves on)
    assert m_a[0]["sampled"] != m_a[1]["sampled"]


# -- (f) the CLI, end to end ------------------------------------------------------------------------------------------


def test_cli_dsnas_search_with_recording_then_analyze_wiring(tmp_path, capsys):
    out = tmp_path / "dsnas"
    code = main(["search", "--mode", "dsnas", "--record-wiring", "--all-normal", "--nodes", "2", "-C", "4", "-L", "2",
                 "--batch-size", "16", "--epochs", "2", "--steps-per-epoch", "4", "--dataset", "digits",
                 "--out", str(out), "--no-progress", "--no-plots"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "argmax(α) child accuracy on the search split" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "dsnas" and config["sample_rest"] == "alpha"
    assert main(["analyze", "wiring", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sampled child wires" in printed and "argmax(α) child" in printed
    folder = out / "wiring"
    for name in ("wiring_child_normal.png", "wiring_cost.png", "wiring_cost_epochs.png", "wiring_edges_normal.png",
                 "wiring_cell_cost_normal.png", "wiring_summary.json"):  # fmt: skip
        assert (folder / name).is_file(), name
    summary = json.loads((folder / "wiring_summary.json").read_text())
    child = summary["sampled_child"]["normal"]
    assert summary["mode"] == "dsnas" and summary["sampled_child"]["epochs"] == [1, 2]
    assert child["live_edges"] == 5 and set(child["non_none_fraction"]) == {"0-2", "1-2", "0-3", "1-3", "2-3"}
    assert all(0 <= v <= 1 for series in child["non_none_fraction"].values() for v in series)
    assert len(child["argmax_edges"]) == 3  # the initial α and one record per epoch
    assert len(summary["cost"]["per_epoch"]["epochs"]) == 2
    assert "reduce" not in summary["sampled_child"]


def test_a_bilevel_summary_has_no_sampled_child(tmp_path):
    from cellnas.analysis.wiring import load_run, wiring_summary

    out = tmp_path / "bilevel"
    search(out=out, record_wiring=True, all_normal=True, nodes=2, **{**TINY, "epochs": 1, "steps_per_epoch": 2})
    summary = wiring_summary(load_run(out))
    assert "sampled_child" not in summary and summary["cost"]["first_epoch"]
    assert all(v is not None for v in summary["cost"]["first_epoch"]["search"]["normal"].values())


# -- (g) combinations that make no sense ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--mode", "dsnas", "--order", "2"], "--order 2 needs --mode bilevel"),
        (["--mode", "dsnas", "--partial-channels", "2"], "cannot be combined with --mode dsnas"),
        (["--mode", "dsnas", "--edge-norm"], "cannot be combined with --mode dsnas"),
        (["--mode", "dsnas", "--search-batches", "fresh"], "--search-batches fresh needs --mode bilevel"),
        (["--sample-rest", "uniform"], "--sample-rest uniform needs --mode dsnas"),
        (["--mode", "single-level", "--sample-rest", "uniform"], "--sample-rest uniform needs --mode dsnas"),
    ],
)
def test_bad_dsnas_combinations_are_refused_in_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--no-progress", "--epochs", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("key", ["dsnas_reward_clip", "dsnas_arch_clip"])
def test_a_non_positive_clip_is_refused(key):
    with pytest.raises(CellnasError, match=f'"{key}" in the config must be positive'):
        resolve_config(None, {"mode": "dsnas", key: 0.0})


def test_the_dsnas_presets_resolve_and_the_wiring_presets_are_unchanged():
    for name in ("wiring-dsnas", "wiring-dsnas-minimal", "wiring-dsnas-ablation"):
        cfg = resolve_config(name)
        assert (cfg.mode, cfg.seed, cfg.batch_size, cfg.epochs, cfg.all_normal) == ("dsnas", 6, 96, 150, True)
    assert resolve_config("wiring").mode == "bilevel" and "mode" not in PRESETS["wiring-minimal"]
    cfg = resolve_config("wiring-dsnas-ablation")
    cfg.remove_edges["normal"].append("1-3")  # a run's config never changes the preset
    assert PRESETS["wiring-dsnas-ablation"]["remove_edges"] == {"normal": ["0-2", "0-3"]}
