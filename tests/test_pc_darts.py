"""PC-DARTS (Xu et al., ICLR 2020): partial channel connections and edge normalisation in the supernet.

The fast cell (the ops of an edge on the shared first C/K channels, a node's edges summed before one concatenation
and shuffle) is checked against a literal transcription of PC-DARTS's MixedOp / Cell / genotype(), op by op.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cellnas.errors import CellnasError
from cellnas.genotype import PRIMITIVES, Cell
from cellnas.search import search
from cellnas.search.config import resolve_config
from cellnas.supernet import SearchNetwork, SearchSpace, channel_shuffle, derive, node_softmax


def _shuffle_reference(x, groups):  # PC-DARTS model_search.py channel_shuffle
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(b, -1, h, w)


def _mixed_reference(mixed, x, weights, k):  # PC-DARTS MixedOp.forward, literally
    dim_2 = x.shape[1]
    xtemp, xtemp2 = x[:, : dim_2 // k], x[:, dim_2 // k :]
    temp1 = sum(w * op(xtemp) for w, op in zip(weights, mixed._ops))
    if k == 1:  # edge normalisation alone (PC-DARTS's code always has K=4)
        return temp1
    if temp1.shape[2] == x.shape[2]:
        ans = torch.cat([temp1, xtemp2], dim=1)
    else:
        ans = torch.cat([temp1, F.max_pool2d(xtemp2, 2, 2)], dim=1)
    return _shuffle_reference(ans, k)


def _edge_weights_reference(betas, steps):  # PC-DARTS Network.forward's weights2 loop, literally
    n, start = 3, 2
    weights2 = F.softmax(betas[0:2], dim=-1)
    for _ in range(steps - 1):
        end = start + n
        tw2 = F.softmax(betas[start:end], dim=-1)
        start = end
        n += 1
        weights2 = torch.cat([weights2, tw2], dim=0)
    return weights2


def _network_reference(net, x):  # PC-DARTS Network.forward / Cell.forward, NCHW, a Python sum per node
    wn, wr = F.softmax(net.alphas_normal, -1), F.softmax(net.alphas_reduce, -1)
    n = net.space.n_nodes
    ones = torch.ones(net.space.n_edges, dtype=x.dtype)
    en = _edge_weights_reference(net.betas_normal, n) if net.edge_norm else ones
    er = _edge_weights_reference(net.betas_reduce, n) if net.edge_norm else ones
    s0 = s1 = net.stem(x)
    for cell in net.cells:
        weights, weights2 = (wr, er) if cell.reduction else (wn, en)
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        offset = 0
        for _ in range(cell.n_nodes):
            s = sum(weights2[offset + j] * _mixed_reference(cell._ops[offset + j], h, weights[offset + j],
                                                            cell.partial_channels)
                    for j, h in enumerate(states))  # fmt: skip
            offset += len(states)
            states.append(s)
        s0, s1 = s1, torch.cat(states[-cell.n_nodes :], dim=1)
    return net.classifier(net.global_pooling(s1).flatten(1))


@pytest.mark.parametrize(
    "C, k, edge_norm", [(8, 2, False), (8, 4, False), (8, 4, True), (8, 1, True), (12, 4, True)]
)
def test_the_fast_pc_darts_cell_computes_the_reference_function_and_gradients(C, k, edge_norm):
    # C=12, K=4: 3 channels per edge at the first stage; a reduction cell's edges get 2C/K = 6
    torch.manual_seed(0)
    net = SearchNetwork(C=C, num_classes=3, layers=3, in_channels=3, partial_channels=k, edge_norm=edge_norm,
                        seed=1).double()  # fmt: skip  (cells: normal, reduction, reduction)
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()  # far from uniform, so that a wrong weighting shows
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    params = list(net.parameters())
    fast = net(x)
    g_fast = torch.autograd.grad((fast**2).sum(), params, allow_unused=True)
    ref = _network_reference(net, x)
    g_ref = torch.autograd.grad((ref**2).sum(), params, allow_unused=True)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    assert any(g is not None for g in g_fast)
    for (name, p), a, b in zip(net.named_parameters(), g_fast, g_ref):
        a = torch.zeros_like(p) if a is None else a  # unused on one side: must be unused (zero) on the other
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)
    if edge_norm:
        index = [i for i, p in enumerate(params) if p is net.betas_normal]
        assert index and g_fast[index[0]].abs().max() > 0


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_channel_shuffle_is_the_reference_shuffle_and_keeps_the_layout(layout):
    x = torch.randn(2, 12, 3, 5).contiguous(memory_format=layout)
    y = channel_shuffle(x, 4)
    torch.testing.assert_close(y, _shuffle_reference(x.contiguous(), 4), rtol=0, atol=0)
    assert y.is_contiguous(memory_format=layout)
    assert y[:, 1].equal(x[:, 3])  # output channel i*K + g is input channel g*(C/K) + i: 0*4 + 1 <- 1*3 + 0


def _parse_reference(weights, weights2, steps=4):  # PC-DARTS Network.genotype()._parse, literally
    gene, n, start = [], 2, 0
    none = PRIMITIVES.index("none")
    for i in range(steps):
        end = start + n
        W, W2 = weights[start:end].copy(), weights2[start:end].copy()
        for j in range(n):
            W[j, :] = W[j, :] * W2[j]
        edges = sorted(range(i + 2), key=lambda x: -max(W[x][k] for k in range(len(W[x])) if k != none))[:2]
        for j in edges:
            k_best = None
            for k in range(len(W[j])):
                if k != none and (k_best is None or W[j][k] > W[j][k_best]):
                    k_best = k
            gene.append((PRIMITIVES[k_best], j))
        start = end
        n += 1
    return gene


def test_node_softmax_is_pc_darts_edge_normalisation_and_checks_the_length():
    betas = torch.randn(14, dtype=torch.float64)
    torch.testing.assert_close(node_softmax(betas, 4), _edge_weights_reference(betas, 4), rtol=0, atol=0)
    for wrong in (10, 20):
        with pytest.raises(CellnasError, match=f"one value per edge \\(14 for 4 nodes\\), got shape \\({wrong},\\)"):
            derive(np.zeros((14, 8)), np.zeros((14, 8)), None, np.zeros(wrong), np.zeros(14))


def test_derivation_with_edge_normalisation_is_pc_darts_rule():
    rng = np.random.default_rng(3)
    for _ in range(20):
        alphas, betas = rng.normal(size=(2, 14, 8)), rng.normal(size=(2, 14)) * 3
        g = derive(alphas[0], alphas[1], SearchSpace(), betas[0], betas[1])
        for cell, a, b in ((g.normal, alphas[0], betas[0]), (g.reduce, alphas[1], betas[1])):
            w = np.exp(a) / np.exp(a).sum(1, keepdims=True)
            w2 = node_softmax(torch.tensor(b), 4).numpy()
            assert cell == Cell.from_pairs(_parse_reference(w, w2), (2, 3, 4, 5))


def test_the_edge_weights_change_the_derived_cell():
    alphas = np.zeros((14, 8))
    alphas[:, PRIMITIVES.index("sep_conv_3x3")] = 1.0
    alphas[0, PRIMITIVES.index("sep_conv_3x3")] = 1.5  # edge 0 -> 2 strongest by alpha
    betas = np.zeros(14)
    betas[1] = 5.0  # beta moves node 2's strength to edge 1 -> 2 ...
    plain = derive(alphas, alphas).normal.nodes[0]
    normed = derive(alphas, alphas, None, betas, betas).normal.nodes[0]
    assert [i for _, i in plain] == [0, 1] and [i for _, i in normed] == [1, 0]  # ... so it comes first


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"channels": 8, "partial_channels": 3}, "must divide the channels C=8"),
        ({"partial_channels": 0}, "must be an integer >= 1"),
        ({"partial_channels": 4, "record_wiring": True}, "cannot be combined with --record-wiring"),
        ({"edge_norm": True, "remove_edges": {"normal": ["0-2"]}}, "cannot be combined"),
        ({"arch_warmup": -1}, r"--arch-warmup .* must be >= 0"),
        ({"record_wiring": True, "arch_warmup": 1}, "--record-wiring needs --arch-warmup 0"),
    ],
)
def test_pc_darts_settings_that_cannot_work_are_refused_in_one_line(overrides, message):
    with pytest.raises(CellnasError, match=message) as e:
        resolve_config(None, overrides)
    assert "\n" not in str(e.value)


def test_a_warm_up_as_long_as_the_run_is_warned_about_once(tmp_path, caplog):
    _pc_search(tmp_path, "w", epochs=1, steps_per_epoch=1)
    assert caplog.text.count("α is not updated in this run") == 1


def test_an_odd_number_of_channels_per_edge_is_accepted():
    cfg = resolve_config(None, {"channels": 12, "partial_channels": 4})  # reduction edges get 2C/K = 6, even
    assert (cfg.channels, cfg.partial_channels) == (12, 4)


def test_the_preset_is_pc_darts_search_setting():
    cfg = resolve_config("pc-darts-cifar10")
    assert (cfg.partial_channels, cfg.edge_norm, cfg.arch_warmup, cfg.batch_size, cfg.lr, cfg.arch_lr) == (
        4, True, 15, 256, 0.1, 6e-4,
    )  # fmt: skip


def _pc_search(tmp_path, name, **kw):
    args = dict(dataset="digits", channels=8, layers=3, epochs=2, steps_per_epoch=2, batch_size=16,
                partial_channels=4, edge_norm=True, arch_warmup=1, plots=False, progress=False)  # fmt: skip
    return search(out=tmp_path / name, **{**args, **kw})


def test_a_pc_darts_search_freezes_the_architecture_for_the_warm_up_and_resumes_exactly(tmp_path):
    initial = SearchNetwork(C=8, num_classes=10, layers=3, in_channels=1, partial_channels=4, edge_norm=True, seed=2)
    one = _pc_search(tmp_path, "one", epochs=1, arch_warmup=0)
    metrics = one.metrics
    assert "arch_frozen" not in metrics[0]
    frozen = _pc_search(tmp_path, "a")
    assert frozen.metrics[0]["arch_frozen"] is True and "arch_frozen" not in frozen.metrics[1]
    first = np.asarray(frozen.metrics[0]["alphas_softmax"]["normal"])
    np.testing.assert_allclose(first, F.softmax(initial.alphas_normal, -1).detach().numpy(), rtol=0, atol=1e-5)
    weights = frozen.metrics[1]["edge_weights"]["normal"]
    assert len(weights) == 14 and sum(weights[:2]) == pytest.approx(1.0, abs=1e-4)  # node 2's two edges
    saved = np.load(frozen.run_dir / "alphas.npz")
    assert saved["betas_normal"].shape == (14,)
    assert not np.allclose(saved["betas_normal"], initial.betas_normal.detach().numpy())  # updated after warm-up
    # two epochs in two sessions end where two epochs in one do
    _pc_search(tmp_path, "b", epochs=1)
    resumed = search(resume=tmp_path / "b", epochs=2, progress=False)
    again = np.load(resumed.run_dir / "alphas.npz")
    for key in ("normal", "reduce", "betas_normal", "betas_reduce"):
        np.testing.assert_array_equal(again[key], saved[key])
    assert resumed.genotype == frozen.genotype
    # the edge weights are kept through time beside softmax(α), across the resume too
    hist, hist_again = np.load(frozen.run_dir / "alphas_history.npz"), np.load(resumed.run_dir / "alphas_history.npz")
    for name in ("normal", "reduce"):
        edges = hist[f"edge_weights_{name}"]
        assert edges.shape == (len(hist["step"]), 14)
        np.testing.assert_allclose(edges.reshape(-1, 14)[:, :2].sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(edges[-1], frozen.metrics[-1]["edge_weights"][name], atol=1e-5)
        np.testing.assert_array_equal(hist_again[f"edge_weights_{name}"], edges)


def test_an_edge_norm_run_saved_without_edge_history_resumes_with_nan_for_the_old_records(tmp_path):
    import torch

    run = _pc_search(tmp_path, "old", epochs=1)
    ckpt = run.run_dir / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    n_old = len(state["history"]["step"])
    for name in ("normal", "reduce"):
        del state["history"][f"edge_{name}"]  # as written before the edge weights were recorded
    torch.save(state, ckpt)
    resumed = search(resume=run.run_dir, epochs=2, progress=False)
    edges = np.load(resumed.run_dir / "alphas_history.npz")["edge_weights_normal"]
    assert np.isnan(edges[:n_old]).all() and not np.isnan(edges[n_old:]).any() and len(edges) > n_old


def test_the_cli_can_switch_a_preset_edge_norm_off_and_says_a_resumed_json_summary_is_resumed(tmp_path, capsys):
    from cellnas.cli import main

    out = tmp_path / "cli"
    common = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "16", "--no-plots", "--json"]
    argv = ["search", "--partial-channels", "4", "--edge-norm", "--no-edge-norm", "--channels", "8", "--layers", "3"]
    assert main([*argv, *common, "--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["resumed"] is False
    assert json.loads((out / "config.json").read_text())["edge_norm"] is False
    assert main(["search", "--resume", str(out), "--epochs", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] is True


def test_an_edge_norm_run_plots_the_scores_the_derivation_ranks(tmp_path):
    from cellnas.plots.search import derivation_scores, plot_search_run

    run = _pc_search(tmp_path, "plots", epochs=1, arch_warmup=0, plots=True)
    alphas = np.load(run.run_dir / "alphas.npz")
    scores, label = derivation_scores(alphas, "normal", 4)
    assert label == "softmax(α) × edge weight"
    # the derivation keeps, per node, the edges with the largest score: the plotted matrix decides the cell
    assert Cell.from_pairs(_parse_reference(scores, np.ones(14)), (2, 3, 4, 5)) == run.genotype.normal
    plain, plain_label = derivation_scores({"normal": alphas["normal"]}, "normal", 4)
    assert plain_label == "softmax(α)" and not np.allclose(plain, scores)
    assert (run.run_dir / "alphas_normal.png").stat().st_size > 0
    names = {p.name for p in plot_search_run(run.run_dir)}
    assert {"alphas_reduce.png", "edge_weights_normal.png", "edge_weights_reduce.png"} <= names


def test_a_search_preset_made_for_another_dataset_is_warned_about(caplog):
    resolve_config("pc-darts-cifar10", {"dataset": "digits"})
    assert "search preset 'pc-darts-cifar10' is made for cifar10, but --dataset digits was given" in caplog.text
    caplog.clear()
    resolve_config("pc-darts-cifar10")
    resolve_config("wiring", {"dataset": "digits"})  # a preset without a dataset fits every dataset
    assert "made for" not in caplog.text
