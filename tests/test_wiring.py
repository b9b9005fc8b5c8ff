"""Wiring evolution (Xie et al. 2021): the recorded cost, edge ablations, selection times, the study command."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cellnas.analysis.wiring import selection_times
from cellnas.cli import main
from cellnas.errors import CellnasError
from cellnas.search import search
from cellnas.search.wiring import ControlledSupernet, CostRecorder, parse_edge
from cellnas.supernet import SearchNetwork, SearchSpace


def _tiny(all_normal=False, **kw):
    net = SearchNetwork(C=3, num_classes=4, layers=3, space=SearchSpace(n_nodes=2), in_channels=1,
                        all_normal=all_normal, seed=0).double()  # fmt: skip
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 0.3)
    return net, ControlledSupernet(net, **kw).double()


def test_recorded_cost_is_the_gradient_with_respect_to_the_op_weights():
    net, model = _tiny()
    recorder = CostRecorder(model)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (5,), generator=g)
    recorder.begin("train")
    F.cross_entropy(model(x), y).backward()
    recorder.end()
    # independent computation: Z as leaves, C = dL_sum/dZ = <dL/dx_j, o_k(x_i)> summed over the batch
    z_n = F.softmax(net.alphas_normal.detach(), -1).requires_grad_()
    z_r = F.softmax(net.alphas_reduce.detach(), -1).requires_grad_()
    F.cross_entropy(net(x, weights_normal=z_n, weights_reduce=z_r), y, reduction="sum").backward()
    np.testing.assert_allclose(recorder.sums[("train", "normal")], z_n.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(recorder.sums[("train", "reduce")], z_r.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert recorder.counts[("train", "normal")] == 1


def test_none_has_zero_cost_by_construction():
    _, model = _tiny()
    recorder = CostRecorder(model)
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    recorder.begin("search")
    F.cross_entropy(model(x), y).backward()
    recorder.end()
    k_none = list(model.space.ops).index("none")
    assert np.all(recorder.sums[("search", "normal")][:, k_none] == 0)
    assert np.abs(recorder.sums[("search", "normal")]).sum() > 0


def test_nothing_is_recorded_outside_a_phase_or_without_gradients():
    _, model = _tiny()
    recorder = CostRecorder(model)
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(model(x), y).backward()
    recorder.begin("train")
    with torch.no_grad():
        model(x)
    recorder.end()
    assert all(c == 0 for c in recorder.counts.values())


def test_removed_and_fixed_edges_change_the_function_and_the_derivation():
    net, model = _tiny(all_normal=True, remove_edges={"normal": ["0-2"]}, fix_edges={"normal": {"1-2": "sep_conv_5x5"}})
    w = model.mixing_weights("normal")
    assert torch.all(w[0] == 0)
    assert w[1].tolist() == [1.0 if op == "sep_conv_5x5" else 0.0 for op in model.space.ops]
    geno = model.genotype()
    assert geno.normal.nodes[0][0] == ("sep_conv_5x5", 1)  # the fixed edge wins the derivation outright
    # with k=2 and only two predecessors node 2 must still name two inputs: the removed edge comes last
    assert geno.normal.nodes[0][1][1] == 0
    assert parse_edge("0-5", 4) == 9 and parse_edge("3", 4) == 3
    with pytest.raises(CellnasError, match="no such edge"):
        parse_edge("5-2", 4)
    with pytest.raises(CellnasError, match="cannot fix edge"):
        ControlledSupernet(net, fix_edges={"normal": {"0-2": "conv_9x9"}})


def test_contradictory_ablations_are_refused_and_short_nodes_are_announced(caplog):
    net, _ = _tiny(all_normal=True)
    with pytest.raises(CellnasError, match="both removed and fixed"):
        ControlledSupernet(net, remove_edges={"normal": ["1-2"]}, fix_edges={"normal": {"1-2": "sep_conv_5x5"}})
    with pytest.raises(CellnasError, match="no reduction cell"):
        ControlledSupernet(net, remove_edges={"reduce": ["0-2"]})
    with caplog.at_level("WARNING", logger="cellnas.search.wiring"):
        ControlledSupernet(net, remove_edges={"normal": ["0-2"]}).warn_short_nodes()
    assert "normal node 2 keeps 1 live input edge(s) of 2, fewer than k=2" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="cellnas.search.wiring"):
        ControlledSupernet(net, remove_edges={"normal": ["0-3"]}).warn_short_nodes()  # node 3 keeps 2 of 3
    assert caplog.text == ""


def test_edge_ablation_flags_must_name_the_cell(capsys, tmp_path):
    assert main(["search", "--remove-edge", "foo", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "must name the cell: normal:0-2" in capsys.readouterr().err


def test_selection_times_on_a_hand_made_history():
    ops = ["none", "skip_connect", "sep_conv_3x3"]
    times = np.array([0.0, 1.0, 2.0, 3.0])
    h = np.zeros((4, 3, 3))
    h[:, 0] = [[0.5, 0.3, 0.2], [0.4, 0.3, 0.3], [0.3, 0.2, 0.5], [0.2, 0.2, 0.6]]  # selected at t=2
    h[:, 1] = [[0.6, 0.2, 0.2]] * 4  # never
    h[:, 2] = [[0.2, 0.5, 0.3]] * 4  # from the start
    assert selection_times(h, times, ops) == [2.0, None, 0.0]


def test_search_with_recording_then_the_wiring_study(tmp_path, capsys):
    runs = []
    for mode in ("bilevel", "single-level"):
        out = tmp_path / mode
        search(out=out, mode=mode, all_normal=True, nodes=2, record_wiring=True, channels=4, layers=3,
               batch_size=16, epochs=2, steps_per_epoch=2, progress=False, plots=False)  # fmt: skip
        runs.append(str(out))
        rec = [json.loads(line) for line in open(out / "metrics.jsonl")]
        cost = rec[-1]["wiring_cost"]
        phases = {"train"} if mode == "single-level" else {"train", "search"}
        assert {p for p, c in cost.items() if c["normal"]["count"]} == phases
        # wiring.npz: the per-cell costs add up to the summed cost of metrics.jsonl (rounded to 6 decimals there)
        arrays = np.load(out / "wiring.npz")
        assert arrays["layers_normal"].tolist() == [0, 1, 2]
        for phase in ("train", "search"):
            per_cell = arrays[f"cell_cost_{phase}_normal"]
            assert per_cell.shape == (2, 3, 5, 8)  # epochs, cells, edges, ops
            if phase not in phases:
                assert np.isnan(per_cell).all() and np.all(arrays[f"output_samples_{phase}"] == 0)
                continue
            for epoch, m in enumerate(rec):
                summed = np.asarray(m["wiring_cost"][phase]["normal"]["mean"])
                np.testing.assert_allclose(per_cell[epoch].sum(0), summed, atol=1e-6)
            # the correct/wrong split agrees with the loop's own accuracy of the same batches
            samples = arrays[f"output_samples_{phase}"]
            acc = [m["search_acc" if phase == "search" else "train_acc"] for m in rec]
            np.testing.assert_allclose(samples[:, 0] / samples.sum(1), acc)
            assert np.all(samples.sum(1) == 32) and np.all(arrays[f"output_cost_{phase}"][:, 0] <= 0)
    assert main(["analyze", "wiring", *runs, "--out", str(tmp_path / "fig")]) == 0
    summary = json.loads((tmp_path / "fig" / "wiring_summary.json").read_text())
    assert [s["mode"] for s in summary] == ["bilevel", "single-level"]
    assert len(summary[0]["cells"]["normal"]["edges"]) == 5
    assert "cost" in summary[0] and summary[0]["cost"]["first_epoch"]["train"]["normal"]["none"] == 0
    for s, run in zip(summary, runs):  # no ablations: every edge is averaged, per epoch too, and none is marked
        assert all("ablation" not in e for e in s["cells"]["normal"]["edges"]) and "fixed_edges" not in s["cost"]
        metrics = [json.loads(line) for line in open(Path(run) / "metrics.jsonl")]
        means = [np.asarray(m["wiring_cost"]["train"]["normal"]["mean"]) for m in metrics]
        per_epoch = s["cost"]["per_epoch"]
        assert per_epoch["epochs"] == [1, 2]
        for k, op in enumerate(s["ops"]):
            np.testing.assert_allclose(per_epoch["train"]["normal"][op], [m[:, k].mean() for m in means])
            assert per_epoch["train"]["normal"][op][-1] == s["cost"]["last_epoch"]["train"]["normal"][op]
    for s in summary:  # the per-cell cost per op sums to the summed one, cell by cell
        for when in ("first_epoch", "last_epoch"):
            for phase, cells in s["cell_cost"][when].items():
                for op, per_cell in cells["normal"].items():
                    assert sum(per_cell) == pytest.approx(s["cost"][when][phase]["normal"][op], abs=1e-6)
    assert summary[0]["cell_cost"]["layers"] == {"normal": [0, 1, 2]} and summary[0]["cell_cost"]["epochs"] == [1, 2]
    assert set(summary[0]["output_cost"]) == {"epochs", "train", "search"}
    assert set(summary[1]["output_cost"]) == {"epochs", "train"}
    train = summary[1]["output_cost"]["train"]
    assert train["all"]["samples"] == [32, 32] and set(train) == {"correct", "wrong", "all"}
    assert all(c <= 0 for c in train["correct"]["cost"] if c is not None)
    for name in ("wiring_growth.png", "wiring_edges_normal_bilevel.png", "wiring_cost_single-level.png",
                 "wiring_cost_epochs_bilevel.png", "wiring_cell_cost_normal_bilevel.png",
                 "wiring_output_cost_single-level.png"):  # fmt: skip
        assert (tmp_path / "fig" / name).is_file()


def test_recording_refuses_second_order():
    with pytest.raises(CellnasError, match="--record-wiring needs --order 1"):
        search(record_wiring=True, order=2, epochs=1, progress=False)


def test_all_normal_summary_does_not_report_an_unsearched_reduce_cell(tmp_path, capsys, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="cellnas")
    argv = ["search", "--all-normal", "--channels", "4", "--layers", "2", "--batch-size", "16", "--epochs", "1",
            "--steps-per-epoch", "1", "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reduce cell: not searched" in out and "normal cell: width" in out
    assert (tmp_path / "run" / "cell.png").is_file()
    assert {p.name for p in (tmp_path / "run").glob("alpha*reduce*.png")} == set()  # nothing drawn for it
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1")]
    assert epoch_lines and "reduce" not in epoch_lines[0]


def test_the_default_margin_ignores_the_chance_lead_of_the_initialisation():
    from cellnas.analysis.wiring import DEFAULT_MARGIN, selected_mask

    ops = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
           "dil_conv_3x3", "dil_conv_5x5"]  # fmt: skip
    alphas = 1e-3 * np.random.default_rng(0).standard_normal((1, 14, 8))  # DARTS' initialisation
    p = np.exp(alphas) / np.exp(alphas).sum(-1, keepdims=True)
    assert selected_mask(p, ops, 0.0).sum() >= 10  # the best of 7 beats `none` on most edges by chance
    assert selected_mask(p, ops, DEFAULT_MARGIN).sum() == 0
    p[0, 3] = [0.10] + [0.9 / 7] * 7  # `none` clearly behind on edge 3
    assert selected_mask(p, ops, DEFAULT_MARGIN)[0].tolist() == [e == 3 for e in range(14)]


def test_a_bad_margin_is_refused_before_anything_is_written(tmp_path, capsys):
    for bad in ("-0.1", "nan"):
        argv = ["analyze", "wiring", str(tmp_path / "missing"), "--margin", bad, "--out", str(tmp_path / "o")]
        assert main(argv) == 2
        assert "--margin must be a number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


ABLATED = dict(all_normal=True, nodes=2, channels=4, layers=2, batch_size=16, steps_per_epoch=1, progress=False,
               plots=False)  # fmt: skip


def test_a_short_node_is_announced_when_the_run_starts_and_not_again_on_resume(tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="cellnas"):
        search(out=out, epochs=1, remove_edges={"normal": ["0-2"]}, **ABLATED)
    assert caplog.text.count("normal node 2 keeps 1 live input edge(s) of 2, fewer than k=2") == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="cellnas"):
        search(resume=out, epochs=2)
    assert "fewer than k" not in caplog.text


@pytest.fixture(scope="module")
def wiring_runs(tmp_path_factory):
    """Two tiny searches: ``a/run`` all-normal with costs recorded, ``b/run`` normal and reduce without."""
    root = tmp_path_factory.mktemp("wiring")
    search(out=root / "a" / "run", record_wiring=True, epochs=1, **ABLATED)
    search(out=root / "b" / "run", epochs=1, **{**ABLATED, "all_normal": False})
    return root


def _written(capsys, folder) -> set[str]:
    """The files in ``folder``, checked against the command's own "wrote ..." line."""
    names = {p.name for p in folder.iterdir()}
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith("wrote ") and {p.rsplit("/", 1)[-1] for p in said[6:].split(", ")} == names
    return names


def test_wiring_figures_of_one_run_are_named_without_a_suffix(wiring_runs, capsys):
    run = wiring_runs / "a" / "run"
    assert main(["analyze", "wiring", str(run)]) == 0
    assert _written(capsys, run / "wiring") == {"wiring_edges_normal.png", "wiring_cost.png", "wiring_growth.png",
                                                "wiring_cost_epochs.png", "wiring_cell_cost_normal.png",
                                                "wiring_output_cost.png", "wiring_summary.json"}  # fmt: skip
    out = wiring_runs / "one-b"
    assert main(["analyze", "wiring", str(wiring_runs / "b" / "run"), "--out", str(out)]) == 0
    # no --record-wiring: no cost figure; a reduction cell: its own edge figure
    assert _written(capsys, out) == {"wiring_edges_normal.png", "wiring_edges_reduce.png", "wiring_growth.png",
                                     "wiring_summary.json"}  # fmt: skip


def test_wiring_figures_of_two_runs_carry_each_run_name(wiring_runs, tmp_path, capsys):
    a, b = wiring_runs / "a" / "run", wiring_runs / "b" / "run"
    named = {tmp_path / "bilevel": a, tmp_path / "single": b}
    for copy, run in named.items():
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("wiring"))
    assert main(["analyze", "wiring", *map(str, named), "--out", str(tmp_path / "fig")]) == 0
    assert _written(capsys, tmp_path / "fig") == {
        "wiring_edges_normal_bilevel.png", "wiring_cost_bilevel.png", "wiring_cost_epochs_bilevel.png",
        "wiring_cell_cost_normal_bilevel.png", "wiring_output_cost_bilevel.png",
        "wiring_edges_normal_single.png", "wiring_edges_reduce_single.png",
        "wiring_growth.png", "wiring_summary.json",
    }  # fmt: skip
    # two runs in directories of one name: numbered in the order given, so no figure overwrites another
    assert main(["analyze", "wiring", str(a), str(b), "--out", str(tmp_path / "same")]) == 0
    assert _written(capsys, tmp_path / "same") == {
        "wiring_edges_normal_1-run.png", "wiring_cost_1-run.png", "wiring_cost_epochs_1-run.png",
        "wiring_cell_cost_normal_1-run.png", "wiring_output_cost_1-run.png",
        "wiring_edges_normal_2-run.png", "wiring_edges_reduce_2-run.png",
        "wiring_growth.png", "wiring_summary.json",
    }  # fmt: skip
    summary = json.loads((tmp_path / "same" / "wiring_summary.json").read_text())
    assert [s["run"] for s in summary] == [str(a), str(b)]


def test_wiring_out_that_is_a_file_is_a_one_line_error(wiring_runs, tmp_path, capsys):
    (tmp_path / "g.txt").write_text("")
    assert main(["analyze", "wiring", str(wiring_runs / "a" / "run"), "--out", str(tmp_path / "g.txt")]) == 2
    assert "cellnas analyze: error: --out" in capsys.readouterr().err


# -- per-cell costs and the output-level cost (SPEC 4 (d)) ----------------------------------------------------------


def _per_cell_leaves(net, x, y):
    """Independent per-cell costs: every cell reads its own leaf copy of Z; C_cell = dL_sum/dZ_cell."""
    leaves, handles = [], []
    for cell in net.cells:
        alphas = net.alphas_reduce if cell.reduction else net.alphas_normal
        z = F.softmax(alphas.detach(), -1).requires_grad_()
        leaves.append((cell.reduction, z))
        handles.append(cell.register_forward_pre_hook(lambda m, args, z=z: (args[0], args[1], z, *args[3:])))
    F.cross_entropy(net(x), y, reduction="sum").backward()
    for h in handles:
        h.remove()
    return {kind: [z.grad.numpy() for r, z in leaves if ("reduce" if r else "normal") == kind]
            for kind in ("normal", "reduce")}  # fmt: skip


def test_per_cell_costs_are_each_cells_gradient_and_add_up_to_the_summed_cost():
    net = SearchNetwork(C=3, num_classes=4, layers=5, space=SearchSpace(n_nodes=2), in_channels=1, seed=0).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 0.3)
    model = ControlledSupernet(net).double()
    recorder = CostRecorder(model)
    assert recorder.cell_layers == {"normal": [0, 2, 4], "reduce": [1, 3]}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (6,), generator=g)
    recorder.begin("search")
    F.cross_entropy(model(x), y).backward()
    recorder.end()
    expected = _per_cell_leaves(net, x, y)
    for kind in ("normal", "reduce"):
        per_cell = recorder.cell_sums[("search", kind)]
        assert per_cell.shape == (len(recorder.cell_layers[kind]), 5, 8)
        np.testing.assert_allclose(per_cell, np.stack(expected[kind]), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(per_cell.sum(0), recorder.sums[("search", kind)], rtol=1e-9, atol=1e-12)
        assert not np.allclose(per_cell[0], per_cell[-1])  # the cells do not share one cost
    assert np.all(recorder.cell_sums[("train", "normal")] == 0)


def test_output_cost_is_the_derivative_of_the_scaled_cross_entropy():
    from cellnas.search.wiring import output_cost

    logits = torch.tensor([[3.0, 0.5, -1.0], [0.2, 0.1, 2.0], [1.0, 1.2, 0.9], [-2.0, 4.0, 0.0], [0.0, 0.0, 0.1]],
                          dtype=torch.float64)  # fmt: skip
    labels = torch.tensor([0, 0, 1, 2, 2])  # correct: samples 0, 2, 4
    # independent: d CE(s_b z_b)/ds_b at s = 1, one scale per sample
    s = torch.ones(5, 1, dtype=torch.float64, requires_grad=True)
    F.cross_entropy(s * logits, labels, reduction="sum").backward()
    got = output_cost(logits, labels)
    np.testing.assert_allclose(got["cost"].numpy(), s.grad.squeeze(1).numpy(), rtol=1e-12, atol=1e-14)
    assert got["correct"].tolist() == [True, False, True, False, True]
    assert torch.all(got["cost"][got["correct"]] <= 0)
    assert got["cost"][1] > 0 and got["cost"][3] > 0  # confidently wrong: positive cost
    np.testing.assert_allclose(got["loss"].numpy(), F.cross_entropy(logits, labels, reduction="none").numpy())
    np.testing.assert_allclose(got["cost"].numpy(), (got["loss"] - got["entropy"]).numpy(), atol=1e-12)
    # random logits: the sign rule holds for every correct sample
    z, t = torch.randn(200, 10, generator=torch.Generator().manual_seed(0)), torch.randint(0, 10, (200,))
    r = output_cost(z, t)
    assert r["correct"].any() and (~r["correct"]).any() and torch.all(r["cost"][r["correct"]] <= 0)


def test_output_statistics_are_split_by_correctness_per_phase():
    _, model = _tiny()
    recorder = CostRecorder(model)
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2, 0])  # correct, wrong, correct
    recorder.begin("search")
    recorder.end(logits, labels)
    recorder.begin("train")
    recorder.end(logits[1:], labels[1:])  # wrong, correct
    ce = F.cross_entropy(logits, labels, reduction="none").numpy()
    p = F.softmax(logits, 1)
    cost = ((p * logits).sum(1) - logits[torch.arange(3), labels]).numpy()
    search_sums = recorder.output_sums["search"]  # rows: correct, wrong; columns: samples, cost, loss, entropy
    np.testing.assert_allclose(search_sums[:, :3], [[2, cost[0] + cost[2], ce[0] + ce[2]], [1, cost[1], ce[1]]])
    np.testing.assert_allclose(recorder.output_sums["train"][:, :3], [[1, cost[2], ce[2]], [1, cost[1], ce[1]]])
    recorder.epoch_summary()
    arrays = recorder.arrays()
    np.testing.assert_array_equal(arrays["output_samples_search"], [[2, 1]])
    np.testing.assert_allclose(arrays["output_cost_search"], [[(cost[0] + cost[2]) / 2, cost[1]]])
    np.testing.assert_allclose(arrays["output_loss_train"], [[ce[2], ce[1]]])
    assert arrays["cell_cost_train_normal"].shape == (1, 1, 5, 8) and np.isnan(arrays["cell_cost_train_normal"]).all()


def test_a_run_without_wiring_arrays_is_analysed_as_before(wiring_runs, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(wiring_runs / "a" / "run", old, ignore=shutil.ignore_patterns("wiring", "wiring.npz"))
    assert main(["analyze", "wiring", str(old)]) == 0
    assert _written(capsys, old / "wiring") == {"wiring_edges_normal.png", "wiring_cost.png", "wiring_growth.png",
                                                "wiring_cost_epochs.png", "wiring_summary.json"}  # fmt: skip
    before = json.loads((old / "wiring" / "wiring_summary.json").read_text())
    assert main(["analyze", "wiring", str(wiring_runs / "a" / "run"), "--out", str(tmp_path / "new")]) == 0
    after = json.loads((tmp_path / "new" / "wiring_summary.json").read_text())
    assert {k: v for k, v in after.items() if k not in ("cell_cost", "output_cost", "run")} == {
        k: v for k, v in before.items() if k != "run"
    }
    assert "cell_cost" in after and "output_cost" in after and "cell_cost" not in before


RESUMED = dict(record_wiring=True, epochs=2, checkpoint_every=1, **{**ABLATED, "steps_per_epoch": 2})


def _crash_then_resume(out, crash_search, crash_at: int, strip_new_state: bool = False) -> None:
    """A run with costs recorded that crashes when step ``crash_at`` starts, then ``--resume``; with
    ``strip_new_state`` its checkpoint is first made to look like one written before the per-cell records."""
    crash_search(out, crash_at, **RESUMED)
    if strip_new_state:
        state = torch.load(out / "checkpoint.pt", weights_only=False)
        state["wiring"] = {k: state["wiring"][k] for k in ("sums", "counts", "history")}
        torch.save(state, out / "checkpoint.pt")
    search(resume=out)


@pytest.fixture(scope="module")
def recorded_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("wiring-ref") / "run"
    search(out=out, **RESUMED)
    return out


def _wiring_records(run_dir):
    metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return [m["wiring_cost"] for m in metrics], dict(np.load(run_dir / "wiring.npz"))


@pytest.mark.parametrize("crash_at", [1, 2], ids=["mid-epoch", "epoch-boundary"])
def test_recorded_costs_of_a_resumed_run_are_bit_identical(recorded_reference, tmp_path, crash_search, crash_at):
    _crash_then_resume(tmp_path / "run", crash_search, crash_at)
    (cost_a, arrays_a), (cost_b, arrays_b) = _wiring_records(recorded_reference), _wiring_records(tmp_path / "run")
    assert cost_a == cost_b and arrays_a.keys() == arrays_b.keys()
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
    assert np.isfinite(arrays_a["cell_cost_train_normal"]).all()


@pytest.mark.parametrize("crash_at", [1, 2], ids=["mid-epoch", "epoch-boundary"])
def test_a_checkpoint_without_per_cell_records_still_resumes(recorded_reference, tmp_path, crash_search, crash_at):
    _crash_then_resume(tmp_path / "run", crash_search, crash_at, strip_new_state=True)
    (cost_a, arrays_a), (cost_b, arrays_b) = _wiring_records(recorded_reference), _wiring_records(tmp_path / "run")
    assert cost_a == cost_b  # the summed costs as they always were
    for name in ("cell_cost_train_normal", "output_cost_train", "output_samples_search"):
        assert arrays_b[name].shape == arrays_a[name].shape
        assert np.isnan(arrays_b[name][0]).all()  # the epoch the old checkpoint had (partly) run: unknown
        np.testing.assert_array_equal(arrays_b[name][1:], arrays_a[name][1:])  # then recorded as usual
    assert main(["analyze", "wiring", str(tmp_path / "run"), "--out", str(tmp_path / "fig")]) == 0
    summary = json.loads((tmp_path / "fig" / "wiring_summary.json").read_text())
    assert summary["cell_cost"]["epochs"] == [2, 2]
    assert summary["output_cost"]["train"]["correct"]["cost"][0] is None


# -- edge ablations in the analysis (SPEC 4 (c)), the cost per epoch (Fig. 10b), notes, legend, devices ------------

ABLATION = dict(remove_edges={"normal": ["0-2", "0-3"]}, fix_edges={"normal": {"1-2": "sep_conv_5x5"}})


@pytest.fixture(scope="module")
def ablated_run(tmp_path_factory):
    """The paper's ablation of the minimal cell (SPEC 4 (c)), tiny: 0-2 and 0-3 removed, 1-2 fixed, costs recorded."""
    out = tmp_path_factory.mktemp("ablated") / "run"
    search(out=out, record_wiring=True, epochs=2, **ABLATION, **{**ABLATED, "steps_per_epoch": 2})
    return out


def _capture_figures(monkeypatch) -> dict:
    """The figures `analyze wiring` saves, by file name (saved as usual too), to read what they show."""
    import cellnas.plots.wiring as plots

    figures, real = {}, plots.save_figure

    def save(fig, path, *args, **kwargs):
        figures[Path(path).name] = fig
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "save_figure", save)
    return figures


def test_an_ablated_run_is_analysed_through_the_op_weights_it_used(ablated_run, tmp_path, monkeypatch, capsys):
    figures = _capture_figures(monkeypatch)
    assert main(["analyze", "wiring", str(ablated_run), "--out", str(tmp_path / "fig")]) == 0
    s = json.loads((tmp_path / "fig" / "wiring_summary.json").read_text())
    cell = s["cells"]["normal"]
    edges = {e["edge"]: e for e in cell["edges"]}
    assert cell["removed_edges"] == ["0-2", "0-3"] and cell["fixed_edges"] == {"1-2": "sep_conv_5x5"}
    assert cell["free_edges"] == ["1-3", "2-3"] and cell["live_edges"] == 3
    for name in ("0-2", "0-3"):  # no op, never selected
        assert edges[name]["ablation"] == "removed"
        assert edges[name]["final_best_op"] is None and edges[name]["selected_at"] is None
    # the fixed edge reports the op the network used, the derived genotype's, not its (ignored) α's strongest
    geno = json.loads((ablated_run / "genotype.json").read_text())
    assert ["sep_conv_5x5", 1] in geno["normal"]["nodes"][0]
    assert edges["1-2"]["ablation"] == "fixed" and edges["1-2"]["final_best_op"] == "sep_conv_5x5"
    assert edges["1-2"]["selected_at"] == s["times"][0] and edges["1-2"]["final_none"] == 0
    assert edges["1-3"]["ablation"] is None and edges["2-3"]["ablation"] is None
    assert "1-2" in cell["selected_at_start"]
    assert not {"0-2", "0-3"} & {*cell["selected_at_start"], *cell["growth_order"]}
    # with no margin the chance lead of the initialisation counts; still never on a removed edge
    capsys.readouterr()
    assert main(["analyze", "wiring", str(ablated_run), "--margin", "0", "--json", "--out", str(tmp_path / "m0")]) == 0
    m0 = json.loads(capsys.readouterr().out)["cells"]["normal"]
    assert all(1 <= n <= 3 for n in m0["selected_count"])
    assert [e["selected_at"] for e in m0["edges"] if e["ablation"] == "removed"] == [None, None]
    # every figure says the run is ablated; the edge panels of ablated edges draw no α
    assert set(figures) == {"wiring_edges_normal.png", "wiring_cost.png", "wiring_cost_epochs.png", "wiring_growth.png",
                            "wiring_cell_cost_normal.png", "wiring_output_cost.png"}  # fmt: skip
    for name, fig in figures.items():
        assert "removed 0-2, 0-3" in fig.get_suptitle() and "fixed 1-2=sep_conv_5x5" in fig.get_suptitle(), name
    panels = {ax.get_title(): ax for ax in figures["wiring_edges_normal.png"].axes}
    for title in ("0-2 (input): removed", "0-3 (input): removed", "1-2 (input): sep_conv_5x5 (fixed)"):
        assert not panels[title].get_lines(), title
    assert panels["1-3 (input): " + edges["1-3"]["final_best_op"]].get_lines()


def test_an_ablated_runs_costs_average_the_free_edges_and_give_the_fixed_op_apart(ablated_run, tmp_path, capsys):
    assert main(["analyze", "wiring", str(ablated_run), "--out", str(tmp_path / "fig")]) == 0
    s = json.loads((tmp_path / "fig" / "wiring_summary.json").read_text())
    ops, k = s["ops"], s["ops"].index("sep_conv_5x5")
    free = [3, 4]  # 1-3, 2-3 (edge order 0-2, 1-2, 0-3, 1-3, 2-3)
    metrics = [json.loads(line) for line in open(ablated_run / "metrics.jsonl")]
    for phase in ("search", "train"):
        means = [np.asarray(m["wiring_cost"][phase]["normal"]["mean"]) for m in metrics]
        assert np.abs(means[-1][[0, 2]]).sum() > 0  # the recorder logs a (counterfactual) cost on removed edges too
        for when, m in (("first_epoch", means[0]), ("last_epoch", means[-1])):
            np.testing.assert_allclose(list(s["cost"][when][phase]["normal"].values()), m[free].mean(0), atol=1e-12)
        fixed_cost = [m[1, k] for m in means]  # edge 1-2, the fixed op
        assert s["cost"]["fixed_edges"][phase]["normal"] == {"1-2": {"op": "sep_conv_5x5", "cost": fixed_cost}}
        for when in ("first_epoch", "last_epoch"):  # per cell: the same edges, adding up to the summed cost
            per_cell = s["cell_cost"][when][phase]["normal"]
            for op in ops:
                assert sum(per_cell[op]) == pytest.approx(s["cost"][when][phase]["normal"][op], abs=1e-6)
            fixed = s["cell_cost"]["fixed_edges"][when][phase]["normal"]["1-2"]
            assert fixed["op"] == "sep_conv_5x5"
            assert sum(fixed["cost"]) == pytest.approx(s["cost"]["fixed_edges"][phase]["normal"]["1-2"]["cost"][
                0 if when == "first_epoch" else -1], abs=1e-6)  # fmt: skip


def test_the_cost_per_epoch_figure_draws_the_fixed_op_and_the_free_edges_ops(ablated_run, tmp_path, monkeypatch):
    """SPEC 4 (c), the paper's Fig. 10b: the cost of the fixed edge's op and of the others, over epochs."""
    figures = _capture_figures(monkeypatch)
    assert main(["analyze", "wiring", str(ablated_run), "--out", str(tmp_path / "fig")]) == 0
    s = json.loads((tmp_path / "fig" / "wiring_summary.json").read_text())
    assert s["cost"]["per_epoch"]["epochs"] == [1, 2]
    axes = figures["wiring_cost_epochs.png"].axes
    assert sorted(ax.get_title() for ax in axes) == [
        "normal cell, search batches (mean over free edges 1-3, 2-3)",
        "normal cell, train batches (mean over free edges 1-3, 2-3)",
    ]
    for ax in axes:
        phase = "search" if "search" in ax.get_title() else "train"
        lines = {line.get_label(): line for line in ax.get_lines()}
        fixed = lines["1-2 fixed: sep_conv_5x5"]
        assert list(fixed.get_xdata()) == [1, 2]
        np.testing.assert_array_equal(fixed.get_ydata(), s["cost"]["fixed_edges"][phase]["normal"]["1-2"]["cost"])
        for op in s["ops"][1:]:
            np.testing.assert_array_equal(lines[op].get_ydata(), s["cost"]["per_epoch"][phase]["normal"][op])
        assert "none" not in lines  # C(none) = 0: the black zero line


def test_a_run_without_recorded_costs_says_which_figures_need_record_wiring(wiring_runs, tmp_path, capsys):
    plain = wiring_runs / "b" / "run"
    assert main(["analyze", "wiring", str(plain), "--json", "--out", str(tmp_path / "plain")]) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # the note keeps stdout JSON
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"{plain} was searched without --record-wiring" in notes[0]
    for name in ("wiring_cost.png", "wiring_cost_epochs.png", "wiring_cell_cost_<cell>.png", "wiring_output_cost.png"):
        assert name in notes[0]
    assert "search again with --record-wiring" in notes[0]
    # recorded before wiring.npz existed: the two figures that need it are named
    old = tmp_path / "old"
    shutil.copytree(wiring_runs / "a" / "run", old, ignore=shutil.ignore_patterns("wiring", "wiring.npz"))
    assert main(["analyze", "wiring", str(old), "--out", str(tmp_path / "o")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no wiring.npz" in notes[0] and "wiring_output_cost.png" in notes[0]
    assert main(["analyze", "wiring", str(wiring_runs / "a" / "run"), "--out", str(tmp_path / "a")]) == 0
    assert "note:" not in capsys.readouterr().err


def test_the_cost_legend_shows_what_tells_the_epochs_apart(wiring_runs, tmp_path, monkeypatch):
    """Bars are coloured per op: the legend's swatches show the epochs' own mark (hatching), not a colour."""
    figures = _capture_figures(monkeypatch)
    assert main(["analyze", "wiring", str(wiring_runs / "a" / "run"), "--out", str(tmp_path / "fig")]) == 0
    for ax in figures["wiring_cost.png"].axes:
        legend = ax.get_legend()
        first, last = ax.containers  # the bars of the first and of the last epoch
        assert "op" in legend.get_title().get_text()
        handles = legend.legend_handles
        assert handles[0].get_hatch() != handles[1].get_hatch()
        for bars, handle in ((first, handles[0]), (last, handles[1])):
            assert {bar.get_hatch() for bar in bars} == {handle.get_hatch()}
            assert len({bar.get_facecolor() for bar in bars}) > 1  # coloured per op, as the legend title says


class _NoFloat64(torch.Tensor):
    """A gradient as a device without float64 (Apple MPS) gives it: no float64 on the device, plain after .cpu()."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.double or (func is torch.Tensor.to and torch.float64 in (*args[1:], *kwargs.values())):
            raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64")
        if func is torch.Tensor.cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return args[0].clone()
        return super().__torch_function__(func, types, args, kwargs)


def test_the_summed_cost_hook_moves_to_the_cpu_before_float64():
    _, model = _tiny()
    recorder = CostRecorder(model)
    hooks = []

    class _Weights:  # stands in for Z: keeps the hook the recorder registers
        requires_grad = True

        def register_hook(self, fn):
            hooks.append(fn)

    recorder.begin("train")
    recorder.hook("normal", _Weights(), 4)
    grad = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))  # float32, as on a GPU
    hooks[0](grad.as_subclass(_NoFloat64))
    np.testing.assert_array_equal(recorder.sums[("train", "normal")], grad.double().numpy() * 4)  # bit-identical
    assert recorder.counts[("train", "normal")] == 1


def test_recording_an_all_normal_search_leaves_the_unused_reduce_alpha_alone(tmp_path):
    """The recorder wraps the supernet: the architect must still see which α no loss reads (no Adam decay on it)."""
    search(out=tmp_path / "run", all_normal=True, nodes=2, record_wiring=True, channels=4, layers=3, batch_size=16,
           epochs=1, steps_per_epoch=3, progress=False, plots=False)  # fmt: skip
    history = np.load(tmp_path / "run" / "alphas_history.npz")
    assert np.array_equal(history["reduce"][0], history["reduce"][-1])
