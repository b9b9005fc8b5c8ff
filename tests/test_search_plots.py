"""The search figures show what a researcher looks for: near-uniform weights early in a search still show their
differences, and epoch axes have whole-number ticks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellnas.genotype import PRIMITIVES
from cellnas.plots import search as plots


def _figure(monkeypatch, draw):
    captured = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: captured.append(fig) or Path(path))
    draw()
    return captured[0]


def test_the_alpha_heatmap_spans_the_values_own_range_and_prints_enough_decimals(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    probs = 0.125 + rng.normal(size=(5, 8)) * 3e-4  # 2 nodes, 8 ops: weights after a short search
    fig = _figure(monkeypatch, lambda: plots.plot_alpha_heatmap(probs, PRIMITIVES, 2, "t", tmp_path / "a.png"))
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (probs.min(), probs.max())
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == probs.size and len(set(texts)) >= 8  # "0.13" everywhere would show nothing
    assert all(len(t.split(".")[1]) == 4 for t in texts)
    flat = np.full((5, 8), 0.125)
    fig = _figure(monkeypatch, lambda: plots.plot_alpha_heatmap(flat, PRIMITIVES, 2, "t", tmp_path / "b.png"))
    assert fig.axes[0].images[0].get_clim()[0] == 0.0  # all equal: a scale from 0, no division by zero


def test_the_alpha_evolution_has_whole_epoch_ticks_and_an_epoch_label(monkeypatch, tmp_path):
    history = np.full((4, 5, 8), 0.125)
    fig = _figure(monkeypatch, lambda: plots.plot_alpha_evolution(history, np.arange(4), PRIMITIVES, 2, "t",
                                                                  tmp_path / "e.png"))  # fmt: skip
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)
    assert any(ax.get_xlabel() == "epoch" for ax in fig.axes)


def test_the_wiring_figures_have_whole_epoch_and_count_ticks(monkeypatch, tmp_path):
    from cellnas.cli import main
    from cellnas.plots import wiring as wiring_plots
    from cellnas.search import search

    run = tmp_path / "run"
    search(epochs=2, steps_per_epoch=1, channels=4, layers=3, nodes=2, batch_size=16, progress=False, plots=False,
           out=run)  # fmt: skip
    figures = {}
    monkeypatch.setattr(wiring_plots, "save_figure", lambda fig, path: figures.setdefault(Path(path).name, fig))
    assert main(["analyze", "wiring", str(run), "--out", str(tmp_path / "w")]) == 0
    growth = figures["wiring_growth.png"]
    growth.canvas.draw()
    count, width, depth = growth.axes[:3]
    for ax in (count, width, depth):
        assert all(float(t).is_integer() for t in ax.get_xticks())
    assert all(float(t).is_integer() for t in [*count.get_yticks(), *depth.get_yticks()])
    assert all(float(2 * t).is_integer() for t in width.get_yticks())  # multiples of c/2
    edges = figures["wiring_edges_normal.png"]
    edges.canvas.draw()
    assert all(float(t).is_integer() for t in edges.axes[0].get_xticks())
    assert any(ax.get_xlabel() == "epoch" for ax in edges.axes)
