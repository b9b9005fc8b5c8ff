"""Loss landscapes on the filter-normalised plane (Li et al. 2018; Shu et al. 2020, SPEC 3.4)."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
import torch
from torch import nn

from cellnas.analysis.landscape import (
    axis,
    evaluate_batches,
    filter_normalize,
    interpolation,
    load_grid,
    loss_landscape,
    plane_directions,
)
from cellnas.errors import RunError


class Quadratic(nn.Module):
    """L(W, b) = ||W - W*||^2 + ||b - b*||^2: the landscape has a closed form."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(4, 3, 2, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))
        self.register_buffer("W_star", torch.randn(4, 3, 2, generator=g, dtype=torch.float64))
        self.register_buffer("b_star", torch.randn(4, generator=g, dtype=torch.float64))

    def loss(self) -> float:
        return float(((self.W - self.W_star) ** 2).sum().detach() + ((self.b - self.b_star) ** 2).sum().detach())


def _tiny_classifier(seed: int = 0) -> tuple[nn.Module, list]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(8, 1, 5, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]
    net.train()
    with torch.no_grad():  # non-trivial running statistics
        for x, _ in batches:
            net(x)
    return net.eval(), batches


def test_quadratic_landscape_matches_its_closed_form():
    model = Quadratic()
    w0, b0 = model.W.detach().clone(), model.b.detach().clone()
    xs, ys = axis(-1, 1, 5), axis(-0.5, 0.5, 3)
    grid = loss_landscape(model, xs=xs, ys=ys, seed=7, evaluate=lambda: {"losses": model.loss()}, progress=False)
    (dW1, db1), (dW2, db2) = plane_directions(Quadratic(), seed=7)  # same shapes and weights -> same directions
    assert float(db1.abs().sum()) == 0.0 and float(db2.abs().sum()) == 0.0
    for i, b in enumerate(ys):
        for j, a in enumerate(xs):
            expected = float(((w0 + a * dW1 + b * dW2 - model.W_star) ** 2).sum() + ((b0 - model.b_star) ** 2).sum())
            assert grid["losses"][i, j] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert torch.equal(model.W.detach(), w0) and torch.equal(model.b.detach(), b0)  # theta* restored


def test_quadratic_at_its_minimum_is_a_quadratic_form_of_the_directions():
    model = Quadratic()
    with torch.no_grad():
        model.W.copy_(model.W_star)
        model.b.copy_(model.b_star)
    (d1, _), (d2, _) = plane_directions(model, seed=123)
    # filter normalisation: ||d1||^2 = ||d2||^2 = ||W*||^2
    assert float((d1**2).sum()) == pytest.approx(float((model.W_star**2).sum()), rel=1e-9)
    grid = loss_landscape(model, xs=axis(-1, 1, 3), ys=axis(-1, 1, 3), evaluate=lambda: {"losses": model.loss()},
                          progress=False)  # fmt: skip
    n2, cross = float((model.W_star**2).sum()), float((d1 * d2).sum())
    for i, b in enumerate((-1.0, 0.0, 1.0)):
        for j, a in enumerate((-1.0, 0.0, 1.0)):
            assert grid["losses"][i, j] == pytest.approx((a * a + b * b) * n2 + 2 * a * b * cross, rel=1e-9, abs=1e-12)


def test_filter_normalisation_matches_filter_norms_and_zeroes_1d_tensors():
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(5, 3, 3, 3, generator=g), torch.randn(6, 7, generator=g), torch.randn(6, generator=g),
               torch.randn(5, generator=g)]  # fmt: skip
    weights[0][2] = 0.0  # a dead filter gets direction 0
    raw = [torch.randn(w.shape, generator=g) * 10 for w in weights]
    d = filter_normalize(raw, weights)
    for di, ri, wi in zip(d[:2], raw[:2], weights[:2]):
        torch.testing.assert_close(di.flatten(1).norm(dim=1), wi.flatten(1).norm(dim=1))
        # each filter keeps its direction (a positive multiple of the raw draw); only its length changes
        ratio = di.flatten(1) / ri.flatten(1)
        assert torch.all(ratio >= 0)
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    assert float(d[0][2].abs().sum()) == 0.0
    assert float(d[2].abs().sum()) == 0.0 and float(d[3].abs().sum()) == 0.0
    assert float(raw[0].abs().sum()) > 0  # inputs untouched


def test_directions_are_seeded_and_d1_is_shared_by_1d_and_2d():
    net, _ = _tiny_classifier()
    a1, a2 = plane_directions(net, seed=123)
    b1, b2 = plane_directions(net, seed=123)
    (c1,) = plane_directions(net, seed=123, n=1)
    (e1,) = plane_directions(net, seed=124, n=1)
    assert all(torch.equal(x, y) for x, y in zip(a1 + a2, b1 + b2))
    assert all(torch.equal(x, y) for x, y in zip(a1, c1))
    assert not all(torch.equal(x, y) for x, y in zip(a1, e1))
    assert not all(torch.equal(x, y) for x, y in zip(a1, a2))


def test_1d_landscape_is_the_middle_row_of_the_2d_landscape_and_bn_buffers_stay():
    net, batches = _tiny_classifier()
    buffers = [b.clone() for b in net.buffers()]
    xs = axis(-1, 1, 5)
    two = loss_landscape(net, batches, xs=xs, ys=axis(-1, 1, 3), progress=False)
    one = loss_landscape(net, batches, xs=xs, one_d=True, progress=False)
    np.testing.assert_array_equal(one["losses"][0], two["losses"][1])
    loss, acc = evaluate_batches(net, batches)
    assert two["losses"][1, 2] == loss and two["accuracies"][1, 2] == acc
    assert all(torch.equal(a, b) for a, b in zip(buffers, net.buffers()))
    assert not net.training


def _crash_after(net, batches, path, n_points):
    """In a forked child: compute the grid and die hard (no clean-up, no finally) after n_points."""
    calls = {"n": 0}

    def evaluate():
        if calls["n"] == n_points:
            os._exit(3)
        calls["n"] += 1
        loss, acc = evaluate_batches(net, batches)
        return {"losses": loss, "accuracies": acc}

    loss_landscape(net, xs=axis(-1, 1, 4), ys=axis(-1, 1, 3), evaluate=evaluate, path=path, progress=False)
    os._exit(0)


def test_a_killed_grid_resumes_to_the_uninterrupted_result(tmp_path):
    net, batches = _tiny_classifier()
    path = tmp_path / "landscape.npz"
    child = multiprocessing.get_context("fork").Process(target=_crash_after, args=(net, batches, path, 6))
    child.start()
    child.join(60)
    assert child.exitcode == 3
    partial = load_grid(path)
    assert partial.done.sum() == 4 and partial.done[0].all()  # the first full row was saved, nothing after
    assert np.isnan(partial["losses"][~partial.done]).all()
    xs, ys = axis(-1, 1, 4), axis(-1, 1, 3)
    calls = {"n": 0}

    def counted():
        calls["n"] += 1
        loss, acc = evaluate_batches(net, batches)
        return {"losses": loss, "accuracies": acc}

    resumed = loss_landscape(net, xs=xs, ys=ys, evaluate=counted, path=path, progress=False)
    assert calls["n"] == 8  # only the missing points
    fresh = loss_landscape(net, batches, xs=xs, ys=ys, progress=False)
    np.testing.assert_array_equal(resumed["losses"], fresh["losses"])
    np.testing.assert_array_equal(resumed["accuracies"], fresh["accuracies"])
    again = load_grid(path)
    assert again.complete and np.array_equal(again["losses"], fresh["losses"])


def test_an_exception_saves_the_points_done_so_far(tmp_path):
    net, batches = _tiny_classifier()
    path = tmp_path / "g.npz"
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        loss, acc = evaluate_batches(net, batches)
        return {"losses": loss, "accuracies": acc}

    params = [p.clone() for p in net.parameters()]
    with pytest.raises(KeyboardInterrupt):
        loss_landscape(net, xs=axis(-1, 1, 4), ys=axis(-1, 1, 2), evaluate=flaky, path=path, progress=False)
    assert load_grid(path).done.sum() == 2
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))  # theta* restored after the error


def test_resume_refuses_other_settings_and_restart_discards(tmp_path):
    net, batches = _tiny_classifier()
    path = tmp_path / "g.npz"
    xs = axis(-1, 1, 3)
    loss_landscape(net, batches, xs=xs, ys=xs, path=path, config={"split": "test"}, progress=False)
    with pytest.raises(RunError, match="seed: saved 123, now 5"):
        loss_landscape(net, batches, xs=xs, ys=xs, seed=5, path=path, config={"split": "test"}, progress=False)
    with pytest.raises(RunError, match="split"):
        loss_landscape(net, batches, xs=xs, ys=xs, path=path, config={"split": "train"}, progress=False)
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    with pytest.raises(RunError, match="origin"):  # other weights
        loss_landscape(net, batches, xs=xs, ys=xs, path=path, config={"split": "test"}, progress=False)
    g = loss_landscape(net, batches, xs=xs, ys=xs, seed=5, path=path, restart=True, progress=False)
    assert load_grid(path).seed == 5 and g.complete


def test_interpolation_hits_both_networks_at_t_0_and_1():
    a, batches = _tiny_classifier(0)
    b, _ = _tiny_classifier(1)
    grid = interpolation(a, b, batches, ts=axis(0, 1, 3), progress=False)
    assert grid["losses"][0, 0] == pytest.approx(evaluate_batches(a, batches)[0], rel=1e-6)
    assert grid["losses"][0, 2] == pytest.approx(evaluate_batches(b, batches)[0], rel=1e-5)
    with pytest.raises(Exception, match="different architectures"):
        interpolation(a, nn.Linear(2, 2), batches, ts=axis(0, 1, 2), progress=False)


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny DARTS networks trained for one short epoch on digits with the train API."""
    from cellnas.train import train

    root = tmp_path_factory.mktemp("landscape")
    runs = []
    for name, seed in (("a", 0), ("b", 1)):
        train("DARTS_V2", dataset="digits", epochs=1, channels=4, layers=3, steps_per_epoch=3, seed=seed,
              progress=False, out=root / name)  # fmt: skip
        runs.append(root / name)
    return runs


def test_cli_landscape_contours_resume_and_compare(tiny_runs, tmp_path, capsys):
    from cellnas.cli import main

    a, b = tiny_runs
    common = ["--resolution", "3", "--subset", "64", "--no-progress"]
    assert main(["analyze", "landscape", str(a), *common]) == 0
    out = a / "landscape"
    for name in ("landscape.npz", "contour.png", "surface.png"):
        assert (out / name).is_file(), name
    grid = load_grid(out / "landscape.npz")
    assert grid.complete and grid.config["n_images"] == 64 and grid.config["dataset"] == "digits"
    first = grid["losses"].copy()
    assert main(["analyze", "landscape", str(a / "final.pt"), *common]) == 0  # nothing left: re-plot only
    np.testing.assert_array_equal(load_grid(out / "landscape.npz")["losses"], first)
    assert main(["analyze", "landscape", str(a), *common, "--seed", "9"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert main(["analyze", "landscape", str(a), *common, "--compare", str(b), "-o", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.png").is_file()
    assert (tmp_path / "cmp" / "compare" / "1-b" / "landscape.npz").is_file()
    assert main(["analyze", "landscape", str(a), *common, "--1d", "-o", str(tmp_path / "one")]) == 0
    one = load_grid(tmp_path / "one" / "landscape_1d.npz")
    np.testing.assert_array_equal(one["losses"][0], first[1])
    assert (tmp_path / "one" / "slice_1d.png").is_file()
    assert main(["analyze", "landscape", str(a), "--interpolate", str(b), "--resolution", "3", "--max-batches", "1",
                 "--no-progress", "-o", str(tmp_path / "interp")]) == 0  # fmt: skip
    assert (tmp_path / "interp" / "interpolate.png").is_file()


def test_cli_landscape_reads_an_unfinished_run_from_its_checkpoint(tiny_runs, tmp_path):
    import shutil

    from cellnas.cli import main

    run = tmp_path / "partial"
    shutil.copytree(tiny_runs[0], run)
    (run / "final.pt").unlink()
    assert main(["analyze", "landscape", str(run), "--resolution", "2", "--max-batches", "1", "--no-progress",
                 "--restart"]) == 0  # fmt: skip


def test_cli_landscape_errors_are_one_line(tmp_path, capsys):
    from cellnas.cli import main

    assert main(["analyze", "landscape", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["analyze", "landscape", str(tmp_path / "empty")]) == 2
    assert "neither final.pt nor checkpoint.pt" in capsys.readouterr().err


def test_value_at_origin_only_where_the_grid_has_the_origin():
    from cellnas.analysis.landscape import Grid, value_at_origin

    def grid(xs):
        z = np.arange(len(xs) ** 2, dtype=float).reshape(len(xs), len(xs))
        return Grid(xs=xs, ys=xs, values={"losses": z}, done=np.ones(z.shape, bool), seed=0, config={})

    assert value_at_origin(grid(axis(-1, 1, 3))) == 4.0  # the centre of 3 x 3
    assert value_at_origin(grid(axis(-1, 1, 2))) is None  # corners only
    assert value_at_origin(grid(axis(-1, 1, 4))) is None  # +-1/3, no 0


def test_contour_axes_span_the_grid_even_without_a_contour_level(tmp_path):
    import matplotlib.pyplot as plt

    from cellnas.plots.landscape import _contour_on

    xs = axis(-0.5, 0.5, 5)
    fig, ax = plt.subplots()
    assert _contour_on(ax, xs, xs, np.full((5, 5), 20.0), np.arange(0.1, 10, 0.5)) == 0  # no level inside
    assert ax.get_xlim() == (-0.5, 0.5) and ax.get_ylim() == (-0.5, 0.5)
    plt.close(fig)


def test_cli_landscape_even_resolution_reports_the_loss_at_theta_star(tiny_runs, tmp_path, capsys):
    import re

    import torch

    from cellnas.analysis.landscape import evaluate_model, load_trained, make_batches
    from cellnas.cli import main

    a = tiny_runs[0]
    assert main(["analyze", "landscape", str(a), "--resolution", "2", "--max-batches", "1", "--no-progress",
                 "-o", str(tmp_path / "even")]) == 0  # fmt: skip
    printed = float(re.search(r"loss at theta\* ([0-9.]+)", capsys.readouterr().out).group(1))
    grid = load_grid(tmp_path / "even" / "landscape.npz")
    model, _, meta = load_trained(str(a), torch.device("cpu"))
    from cellnas.analysis.landscape import evaluation_set

    data = evaluation_set(meta, split="test")
    batches = make_batches(data, int(grid.config["batch_size"]), max_batches=1, seed=123, device=torch.device("cpu"))
    loss, _ = evaluate_model(model, batches)
    assert printed == pytest.approx(loss, abs=1e-4)
    assert not np.any(np.isclose(grid["losses"], printed, atol=1e-4))  # not a corner of the 2 x 2 grid


@pytest.mark.parametrize("flag", ["--batch-size", "--save-every"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_cli_landscape_refuses_non_positive_sizes(flag, value, tmp_path, capsys):
    from cellnas.cli import main

    assert main(["analyze", "landscape", str(tmp_path), flag, value]) == 2
    assert f"{flag} must be >= 1" in capsys.readouterr().err
