"""Gradient variance (Shu et al. 2020 Fig. 22; SPEC 3.5) against closed forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cellnas.analysis.gradvar import gradient_variance, gradvar_grid, sample_batches
from cellnas.analysis.landscape import EvalSet, axis, load_grid, plane_directions
from cellnas.errors import CellnasError


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out.squeeze(-1) - y) ** 2).mean()


def _regression(n_batches: int = 5, n: int = 7, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(n, d)) for _ in range(n_batches)]
    Y = [rng.normal(size=n) for _ in range(n_batches)]
    model = nn.Linear(d, 1, bias=True).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(rng.normal(size=(1, d))))
        model.bias.fill_(0.3)
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in zip(X, Y)]
    return model, batches, X, Y


def _closed_form(model: nn.Linear, X, Y) -> tuple[float, float]:
    """g_b = (2/n) A_bᵀ(A_b θ - y_b) with A_b = [X_b, 1] and θ = [w, b]; Var = mean_b ||g_b - ḡ||²."""
    theta = np.concatenate([model.weight.detach().numpy().ravel(), model.bias.detach().numpy()])
    grads = []
    for x, y in zip(X, Y):
        A = np.hstack([x, np.ones((x.shape[0], 1))])
        grads.append(2.0 / x.shape[0] * A.T @ (A @ theta - y))
    G = np.stack(grads)
    mean = G.mean(0)
    return float(((G - mean) ** 2).sum(1).mean()), float(mean @ mean)


def test_linear_regression_gradient_variance_matches_the_closed_form():
    model, batches, X, Y = _regression()
    expected, mean_sq = _closed_form(model, X, Y)
    r = gradient_variance(model, batches, loss_fn=_mse)
    assert r.variance == pytest.approx(expected, rel=1e-12)
    assert r.raw_variance == r.variance and r.mean_grad_sqnorm == pytest.approx(mean_sq, rel=1e-12)
    assert (r.n_params, r.num_batches, r.batch_size, r.normalize, r.bn) == (4, 5, 7, "none", "eval")
    per = gradient_variance(model, batches, loss_fn=_mse, normalize="per-parameter")
    assert per.variance == pytest.approx(expected / 4, rel=1e-12) and per.raw_variance == pytest.approx(expected)


def test_identical_batches_have_zero_variance():
    model, batches, _, _ = _regression()
    r = gradient_variance(model, [batches[0]] * 4, loss_fn=_mse)
    assert r.variance == pytest.approx(0.0, abs=1e-20)


def test_train_mode_bn_restores_running_statistics_and_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 3, generator=g), torch.randint(0, 2, (6,), generator=g)) for _ in range(3)]
    before = [b.clone() for b in net.buffers()]
    eval_mode = gradient_variance(net, batches, bn="eval")
    train_mode = gradient_variance(net, batches, bn="train")
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffers()))
    assert not net.training
    assert eval_mode.variance != train_mode.variance  # batch statistics change the function
    with pytest.raises(CellnasError, match="--bn"):
        gradient_variance(net, batches, bn="frozen")
    with pytest.raises(CellnasError, match="at least 2"):
        gradient_variance(net, batches[:1])


def test_unused_parameters_are_left_out_of_the_count():
    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Linear(3, 2)
            self.aux = nn.Linear(3, 2)  # never reaches the loss, like an auxiliary head in eval mode

        def forward(self, x):
            return self.main(x), None

    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(3)]
    assert gradient_variance(WithAux(), batches).n_params == 8


def test_grid_centre_equals_the_point_measurement_and_uses_the_landscape_directions():
    model, batches, X, Y = _regression()
    xs = axis(-1, 1, 3)
    grid = gradvar_grid(model, batches, xs=xs, ys=xs, loss_fn=_mse, seed=11, progress=False)
    assert grid["variances"][1, 1] == pytest.approx(_closed_form(model, X, Y)[0], rel=1e-12)
    # the corner (a, b) = (1, -1) is the closed form at theta* + d1 - d2 (bias direction 0)
    (dw1, db1), (dw2, db2) = plane_directions(model, seed=11)
    shifted = nn.Linear(3, 1).double()
    with torch.no_grad():
        shifted.weight.copy_(model.weight + dw1 - dw2)
        shifted.bias.copy_(model.bias)
    assert float(db1.abs().sum()) == 0.0
    assert grid["variances"][0, 2] == pytest.approx(_closed_form(shifted, X, Y)[0], rel=1e-10)


def test_sample_batches_are_seeded_and_distinct_within_a_batch():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1)
    data = EvalSet("toy", "test", images, torch.arange(20), (0.0,), (1.0 / 255.0,))
    a = sample_batches(data, 8, 3, seed=1)
    b = sample_batches(data, 8, 3, seed=1)
    c = sample_batches(data, 8, 3, seed=2)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(a, c))
    for x, y in a:
        assert len(set(y.tolist())) == 8 and torch.equal(x.view(-1), y.float())  # images follow their labels
    with pytest.raises(CellnasError, match="--batch-size"):
        sample_batches(data, 21, 3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from cellnas.train import train

    out = tmp_path_factory.mktemp("gradvar") / "run"
    train("DARTS_V2", dataset="digits", epochs=1, channels=4, layers=3, steps_per_epoch=3, progress=False, out=out)
    return out


def test_cli_gradvar_point_and_grid(tiny_run, capsys):
    from cellnas.cli import main

    args = ["analyze", "gradvar", str(tiny_run), "--batch-size", "32", "--batches", "3", "--no-progress"]
    assert main(args) == 0
    report = json.loads((tiny_run / "gradvar" / "gradvar.json").read_text())
    point = report["at_trained_weights"]
    assert report["settings"] == {"dataset": "digits", "split": "test", "batch_size": 32, "num_batches": 3,
                                  "batch_seed": 0, "normalize": "none", "bn": "eval"}  # fmt: skip
    assert point["variance"] > 0 and point["n_params"] > 0
    assert main([*args, "--grid", "--resolution", "2", "--normalize", "per-parameter"]) == 0
    grid = load_grid(tiny_run / "gradvar" / "gradvar.npz")
    assert grid.complete and grid.config["normalize"] == "per-parameter"
    np.testing.assert_allclose(grid["variances"] * point["n_params"], grid["raw_variances"], rtol=1e-12)
    assert (tiny_run / "gradvar" / "gradvar_surface.png").is_file()
    assert main([*args, "--grid", "--resolution", "2", "--bn", "train"]) == 2
    assert "bn: saved 'eval', now 'train'" in capsys.readouterr().err


def test_cli_gradvar_grid_lies_on_the_landscape_plane(tiny_run, tmp_path):
    from cellnas.cli import main

    plane = ["--resolution", "2", "--seed", "5", "--no-progress"]
    assert main(["analyze", "gradvar", str(tiny_run), "--grid", "--batch-size", "16", "--batches", "2", *plane,
                 "-o", str(tmp_path / "gv")]) == 0  # fmt: skip
    assert main(["analyze", "landscape", str(tiny_run), "--max-batches", "1", *plane, "-o", str(tmp_path / "ls")]) == 0
    gv, ls = load_grid(tmp_path / "gv" / "gradvar.npz"), load_grid(tmp_path / "ls" / "landscape.npz")
    assert gv.config["directions"] == ls.config["directions"] and gv.config["origin"] == ls.config["origin"]
    np.testing.assert_array_equal(gv.xs, ls.xs)


@pytest.mark.parametrize("study", ["gradvar", "landscape"])
def test_cli_help_of_the_plane_options(study, capsys):
    from cellnas.cli import main

    with pytest.raises(SystemExit):
        main(["analyze", study, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: True)" not in text and "a progress bar is shown" in text
    assert ("--interpolate" in text) == (study == "landscape")  # gradvar has no --interpolate


@pytest.mark.parametrize("flags,message", [
    (["--grid", "--range", "0"], "--range '0': LO must be below HI"),
    (["--grid", "--save-every", "0"], "--save-every must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--seed", "5"], "--resolution, --seed apply to the plane only: add --grid, or leave them out"),
])  # fmt: skip
def test_cli_gradvar_checks_every_argument_before_computing(tiny_run, tmp_path, capsys, flags, message):
    from cellnas.cli import main

    out = tmp_path / "gv"
    argv = ["analyze", "gradvar", str(tiny_run), "--resolution", "2", "--batches", "2", "--batch-size", "8",
            "--no-progress", "-o", str(out), *flags]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"cellnas analyze: error: {message}" in captured.err
    assert captured.out == "" and not out.exists()  # no Var(g) printed, nothing written


@pytest.mark.parametrize("study", ["gradvar", "landscape"])
def test_cli_plane_studies_refuse_an_output_that_is_a_file(tiny_run, tmp_path, capsys, study):
    from cellnas.cli import main

    (tmp_path / "g.txt").write_text("")
    plane = ["--grid", "--resolution", "2"] if study == "gradvar" else ["--resolution", "2"]
    assert main(["analyze", study, str(tiny_run), *plane, "--no-progress", "-o", str(tmp_path / "g.txt")]) == 2
    captured = capsys.readouterr()
    assert "-o" in captured.err and "is an existing file, not a directory" in captured.err and captured.out == ""
