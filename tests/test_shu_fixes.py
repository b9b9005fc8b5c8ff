"""Reviewed defects of the Shu et al. (ICLR 2020) analyses: interpolation past the two networks, non-finite ranges,
seeds, options that do not apply, impossible width families, and what the figures say (SPEC 3.2-3.5)."""

from __future__ import annotations

import itertools
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from cellnas.analysis.landscape import axis, evaluate_batches, interpolation, load_grid
from cellnas.cli import main
from cellnas.errors import CellnasError


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny DARTS network trained for one short epoch on digits."""
    from cellnas.train import train

    out = tmp_path_factory.mktemp("shu") / "a"
    train("DARTS_V2", dataset="digits", epochs=1, channels=4, layers=3, steps_per_epoch=3, progress=False, out=out)
    return out


def _bn_net(var: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(3, 2))  # fmt: skip
    with torch.no_grad():
        net[1].running_var.fill_(var)
    return net.eval()


# ------------------------------------------------------------------------------------------- 1. interpolation


def test_extrapolated_running_variances_are_clamped_at_zero_and_recorded():
    a, b = _bn_net(1.0, 0), _bn_net(4.0, 1)  # t = -0.5 extrapolates the variance to 1 - 1.5 * 3 < 0
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 1, 5, 5, generator=g), torch.randint(0, 2, (8,), generator=g))]
    ts = axis(-0.5, 1.5, 5)
    raw = interpolation(a, b, batches, ts=ts, clamp_variances=False, progress=False)
    assert np.isnan(raw["losses"][0, 0])  # the defect: BN takes the square root of a negative variance
    grid = interpolation(a, b, batches, ts=ts, progress=False)
    assert np.isfinite(grid["losses"]).all() and np.isfinite(grid["accuracies"]).all()
    assert grid.config["bn_running_var"] == "clamped at 0"
    assert grid["clamped_variances"][0, 0] == 3 and not grid["clamped_variances"][0, 1:4].any()
    np.testing.assert_array_equal(grid["losses"][0, 1:4], raw["losses"][0, 1:4])  # nothing changes inside [0, 1]
    assert torch.equal(a[1].running_var, torch.ones(3))  # theta_A restored


def test_accuracy_is_nan_where_the_loss_is_not_finite():
    class NaNNet(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 10), float("nan"))

    loss, acc = evaluate_batches(NaNNet(), [(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))])
    assert np.isnan(loss) and np.isnan(acc)  # not the 1-in-10 "accuracy" of argmax over NaN


def test_cli_interpolate_over_the_default_range_computes_every_point(tiny_run, tmp_path, capsys):
    other = tmp_path / "b"
    shutil.copytree(tiny_run, other)
    (other / "final.pt").unlink()
    state = torch.load(other / "checkpoint.pt", weights_only=False)
    for key in state["model"]:
        if key.endswith("running_var"):
            state["model"][key] = state["model"][key] * 4  # -> negative variances at t = -0.5
    torch.save(state, other / "checkpoint.pt")
    out = tmp_path / "interp"
    assert main(["analyze", "landscape", str(tiny_run), "--interpolate", str(other), "--resolution", "5",
                 "--max-batches", "1", "--no-progress", "-o", str(out)]) == 0  # fmt: skip
    grid = load_grid(out / "interpolate.npz")
    assert grid.xs[0] == -0.5 and grid.xs[-1] == 1.5
    assert np.isfinite(grid["losses"]).all() and np.isfinite(grid["accuracies"]).all()
    assert grid.config["bn_running_var"] == "clamped at 0" and grid["clamped_variances"][0, 0] > 0
    assert "clamped at 0" in capsys.readouterr().err


def test_cli_interpolate_help_says_variances_are_clamped(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "landscape", "--help"])
    assert "clamped at 0" in " ".join(capsys.readouterr().out.split())


def test_1d_figure_leaves_points_without_a_finite_loss_blank(tmp_path, monkeypatch):
    from cellnas.plots import landscape as P

    figures = []
    monkeypatch.setattr(P, "save_figure", lambda fig, path: figures.append(fig))
    xs = np.linspace(-1, 1, 5)
    P.plot_1d(xs, [np.nan, 1.0, 0.5, 2.0, np.inf], [0.1, 0.5, 0.9, 0.4, 0.1], tmp_path / "x.png")
    loss_ax, acc_ax = figures[0].axes
    acc = acc_ax.lines[0].get_ydata()
    assert np.isnan(acc[0]) and np.isnan(acc[4]) and acc[2] == pytest.approx(90.0)
    assert any("no finite loss at 2 of 5 points" in t.get_text() for t in loss_ax.texts)


def test_1d_figure_uses_a_log_loss_axis_when_the_loss_explodes(tmp_path, monkeypatch):
    from cellnas.plots import landscape as P

    figures = []
    monkeypatch.setattr(P, "save_figure", lambda fig, path: figures.append(fig))
    P.plot_1d([0, 1, 2], [1e6, 1.0, 2.0], None, tmp_path / "x.png")
    P.plot_1d([0, 1, 2], [3.0, 1.0, 2.0], None, tmp_path / "y.png")
    assert figures[0].axes[0].get_yscale() == "log" and figures[1].axes[0].get_yscale() == "linear"


# ------------------------------------------------------------------------------------------- 2. --range


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-1:nan", "-inf:1", "-1e308:1e308"])
@pytest.mark.parametrize("study", ["landscape", "gradvar"])
def test_a_non_finite_range_is_refused_before_any_work(tiny_run, tmp_path, capsys, study, value):
    out = tmp_path / "out"
    extra = ["--grid"] if study == "gradvar" else []
    assert main(["analyze", study, str(tiny_run), *extra, f"--range={value}", "--resolution", "3", "--no-progress",
                 "-o", str(out)]) == 2  # fmt: skip
    captured = capsys.readouterr()
    assert f"error: --range {value!r}: LO, HI and HI - LO must be finite numbers" in captured.err
    assert captured.out == "" and not out.exists()


def test_axis_refuses_non_finite_bounds():
    with pytest.raises(CellnasError, match="finite"):
        axis(-np.inf, np.inf, 3)


@pytest.mark.parametrize("flags,message", [
    (["--vmax", "inf"], "--vmax must be a finite number"),
    (["--vmin", "nan"], "--vmin must be a finite number"),
    (["--vlevel", "1e-9"], "more than 1000 contour levels"),
])  # fmt: skip
def test_landscape_contour_levels_must_be_finite_and_few(tiny_run, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert main(["analyze", "landscape", str(tiny_run), *flags, "--no-progress", "-o", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("mode", [["--1d"], ["--interpolate", "RUN"]])
def test_contour_levels_are_refused_where_no_contour_is_drawn(tiny_run, tmp_path, capsys, mode):
    out = tmp_path / "out"
    mode = [str(tiny_run) if a == "RUN" else a for a in mode]
    assert main(["analyze", "landscape", str(tiny_run), *mode, "--vmin", "1", "--no-progress", "-o", str(out)]) == 2
    assert "--vmin sets the contour levels of the 2-D landscape" in capsys.readouterr().err and not out.exists()


def test_gradvar_log_z_without_grid_is_refused(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "gradvar", str(tiny_run), "--log-z", "--no-progress", "-o", str(out)]) == 2
    assert "--log-z applies to the surface of --grid only" in capsys.readouterr().err and not out.exists()


def test_the_command_line_contour_levels_are_li_et_als():
    from cellnas.commands.analyze_cmds.landscape import LEVEL_DEFAULTS
    from cellnas.plots.landscape import LEVELS

    assert tuple(LEVEL_DEFAULTS.values()) == LEVELS


# ------------------------------------------------------------------------------------------- 3. seeds


@pytest.mark.parametrize("argv,flag", [
    (["variants", "DARTS_V2", "--seed", "-1"], "--seed"),
    (["variants", "DARTS_V2", "--kind", "random_ops", "--seeds", "4294967296"], "--seeds"),
    (["variants", "DARTS_V2", "--kind", "random_conn", "--seeds", "0-4294967296"], "--seeds"),
    (["landscape", "RUN", "--seed", "-1"], "--seed"),
    (["landscape", "RUN", "--seed", "4294967296"], "--seed"),
    (["landscape", "RUN", "--interpolate", "RUN", "--seed", "-1"], "--seed"),
    (["gradvar", "RUN", "--batch-seed", "-1"], "--batch-seed"),
    (["gradvar", "RUN", "--batch-seed", "4294967296"], "--batch-seed"),
    (["gradvar", "RUN", "--grid", "--seed", "4294967296"], "--seed"),
    (["convergence", "DARTS_V2", "--dataset", "digits", "--seeds", "4294967296"], "--seeds"),
])  # fmt: skip
def test_out_of_range_seeds_are_one_line_errors(tiny_run, tmp_path, capsys, argv, flag):
    out = tmp_path / "out"
    argv = [str(tiny_run) if a == "RUN" else a for a in argv]
    assert main(["analyze", *argv, "--out" if argv[0] == "convergence" else "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cellnas analyze: error: {flag} must be >= 0 and < 2**32" in err and "Traceback" not in err
    assert not out.exists()


def test_a_seed_named_twice_is_refused():
    from cellnas.commands.analyze_cmds.variants import parse_seeds

    with pytest.raises(CellnasError, match="names seed 3 twice"):
        parse_seeds("1-3,3")


def test_the_family_seeds_must_stay_below_2_to_the_32(tmp_path, capsys):
    assert main(["analyze", "variants", "DARTS_V2", "--seed", str(2**32 - 10), "-o", str(tmp_path / "v")]) == 2
    assert "run past the last seed 2**32 - 1" in capsys.readouterr().err


def test_the_library_refuses_bad_seeds_with_a_cellnas_error():
    from cellnas.analysis.variants import random_conn, random_ops
    from cellnas.zoo import get_genotype

    for fn in (random_ops, random_conn):
        with pytest.raises(CellnasError, match="seed must be >= 0"):
            fn(get_genotype("DARTS_V2"), -1)


# ------------------------------------------------------------------------------------------- 4. options of a kind


@pytest.mark.parametrize("flags,flag", [
    (["--kind", "family", "--seeds", "1-3"], "--seeds"),
    (["--seeds", "1-3"], "--seeds"),  # family is the default kind
    (["--kind", "random_ops", "--widths", "2"], "--widths"),
    (["--kind", "random_ops", "--keep-reduce"], "--keep-reduce"),
    (["--kind", "random_conn", "--per-bin", "2"], "--per-bin"),
    (["--kind", "random_conn", "--max-tries", "50"], "--max-tries"),
    (["--kind", "random_ops", "--seed", "3"], "--seed"),
    (["--kind", "widest", "--seeds", "1"], "--seeds"),
    (["--kind", "widest", "--per-bin", "3"], "--per-bin"),  # even the default value, when given
])  # fmt: skip
def test_variants_refuses_options_its_kind_ignores(tmp_path, capsys, flags, flag):
    out = tmp_path / "v"
    assert main(["analyze", "variants", "DARTS_V2", *flags, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cellnas analyze: error: {flag} applies to --kind" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_variants_help_keeps_the_defaults_and_they_apply(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "variants", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 1-10)", "(default: 0)", "(default: 2,2.5,3,3.5)", "(default: 3)", "(default: 2000)"):
        assert default in text
    assert "(default: None)" not in text
    assert main(["analyze", "variants", "DARTS_V2", "--kind", "random_conn", "-o", str(tmp_path / "c")]) == 0
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    assert [v["seed"] for v in index["variants"]] == list(range(1, 11))


# ------------------------------------------------------------------------------------------- 5. impossible families


def _brute_force_widths(n_nodes: int, k: int = 2) -> dict[float, int]:
    from collections import Counter

    choices = [range(j + 2) for j in range(n_nodes) for _ in range(k)]
    return dict(Counter(sum(1 for s in src if s < 2) / k for src in itertools.product(*choices)))


@pytest.mark.parametrize("n_nodes", [1, 2, 3, 4])
def test_the_possible_widths_and_their_wirings_match_a_brute_force_count(n_nodes):
    from cellnas.analysis.variants import possible_widths, wirings_of_width

    assert wirings_of_width(n_nodes) == _brute_force_widths(n_nodes)
    assert possible_widths(n_nodes) == [1 + 0.5 * i for i in range(2 * n_nodes - 1)]


@pytest.mark.parametrize("flags,message", [
    (["--widths", "5"], "5 is not a possible width of a cell with 4 intermediate nodes"),
    (["--widths", "0"], "0 is not a possible width"),
    (["--widths", "-1"], "-1 is not a possible width"),
    (["--widths", "2.25"], "2.25 is not a possible width"),
    (["--widths", "2,2"], "--widths 2,2 names a width twice"),
    (["--max-tries", "0"], "--max-tries must be >= 1"),
    (["--per-bin", "0"], "--per-bin must be >= 1"),
    (["--per-bin", "145", "--widths", "1"], "only 144 distinct wirings 1c wide"),
    (["--max-tries", "10"], "Raise --max-tries"),
])  # fmt: skip
def test_impossible_families_are_refused_naming_the_valid_values(tmp_path, capsys, flags, message):
    out = tmp_path / "v"
    assert main(["analyze", "variants", "DARTS_V2", *flags, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    if "possible width" in message:
        assert "possible widths (units of c): 1, 1.5, 2, 2.5, 3, 3.5, 4" in err
    assert not out.exists()  # nothing written, not even the directory


# ------------------------------------------------------------------------------------------- 6. cosmetics


def test_compare_panels_have_alpha_and_beta_labels(tmp_path, monkeypatch):
    from cellnas.plots import landscape as P

    figures = []
    monkeypatch.setattr(P, "save_figure", lambda fig, path: figures.append(fig))
    xs = axis(-1, 1, 3)
    z = np.add.outer(xs**2, xs**2)
    P.plot_compare([("a", xs, xs, z), ("b", xs, xs, z)], tmp_path / "c.png")
    for ax in figures[0].axes[:2]:
        assert "alpha" in ax.get_xlabel() and "beta" in ax.get_ylabel()


@pytest.mark.parametrize("n_epochs", [1, 2])
def test_convergence_plots_have_whole_epoch_ticks(tmp_path, monkeypatch, n_epochs):
    from cellnas.plots import convergence as P

    figures = []
    monkeypatch.setattr(P, "save_figure", lambda fig, path: figures.append(fig))
    curve = {"epoch": np.arange(1, n_epochs + 1), "mean": np.ones(n_epochs), "std": np.zeros(n_epochs), "n": 1}
    curves = {"x": {k: curve for k in ("train_loss", "test_loss", "train_acc", "test_acc")}}
    P.plot_convergence(curves, tmp_path / "c.png")
    P.plot_all_curves(curves, tmp_path / "a.png")
    for fig in figures:
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_convergence_legends_give_width_depth_and_the_base(tmp_path, monkeypatch):
    from cellnas.plots import convergence as P

    figures = []
    monkeypatch.setattr(P, "save_figure", lambda fig, path: figures.append(fig))
    curve = {"epoch": np.arange(1, 3), "mean": np.ones(2), "std": np.zeros(2), "n": 1}
    curves = {n: {"test_loss": curve} for n in ("B", "c1")}
    P.plot_convergence(curves, tmp_path / "c.png", widths={"B": 3.5, "c1": 2.0}, depths={"B": 3, "c1": 5}, base="B")
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert labels == ["B (base, 3.5c, depth 3)", "c1 (2c, depth 5)"]


def test_seed_run_directories_are_named_after_their_genotype_directory(tmp_path):
    from cellnas.analysis.convergence import expand_genotypes
    from cellnas.analysis.variants import widest
    from cellnas.formats import save_genotype
    from cellnas.zoo import get_genotype

    specs = []
    for name, g in (("c1", get_genotype("DARTS_V2")), ("c2", widest(get_genotype("DARTS_V2")))):
        for seed in (0, 1):
            run = tmp_path / name / f"seed-{seed}"
            run.mkdir(parents=True)
            save_genotype(g, run / "genotype.json")
            specs.append(str(run))
    assert [e.name for e in expand_genotypes(specs)] == ["c1", "c2"]  # both seeds of a genotype: kept once
    plain = tmp_path / "train-x"
    shutil.copytree(tmp_path / "c1" / "seed-0", plain)
    assert [e.name for e in expand_genotypes([str(plain)])] == ["train-x"]


def test_the_unfinished_run_notice_counts_a_mid_epoch_checkpoint_in_its_epoch(tiny_run, tmp_path, caplog):
    from cellnas.analysis.landscape import load_trained

    run = tmp_path / "partial"
    shutil.copytree(tiny_run, run)
    (run / "final.pt").unlink()
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    state["config"]["epochs"] = 2
    state["epoch"], state["step_in_epoch"] = 1, 2  # killed after step 2 of epoch 2
    torch.save(state, run / "checkpoint.pt")
    with caplog.at_level(logging.WARNING, logger="cellnas.analysis.landscape"):
        _, _, meta = load_trained(run)
    assert "after step 2/3 of epoch 2/2" in caplog.text and "(1 epochs)" not in caplog.text
    assert (meta["epoch"], meta["step_in_epoch"]) == (1, 2)


# ------------------------------------------------------------------------------------------- 7. figures


def test_variants_figure_marks_the_base_the_seeds_and_the_reduction_cells(tmp_path, monkeypatch):
    from cellnas.plots import variants as P

    calls = []
    monkeypatch.setattr(P, "plot_cell_grid", lambda cells, path, title=None: calls.append((cells, title)))
    assert main(["analyze", "variants", "DARTS_V2", "--per-bin", "1", "--widths", "2,3", "-o", str(tmp_path)]) == 0
    cells, title = calls[0]
    index = json.loads((tmp_path / "index.json").read_text())
    assert [name for name, _ in cells] == ["DARTS_V2 (base)"] + [f"{v['name']} (seed {v['seed']})"
                                                                  for v in index["variants"]]  # fmt: skip
    assert "reduction cells re-wired too" in title
