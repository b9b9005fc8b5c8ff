"""Training curves of a retraining run: loss and error (%) against epoch, training and test (SPEC 2.2)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cellnas.plots.cells import save_figure  # noqa: E402

__all__ = ["plot_curves", "plot_train_run"]


def plot_curves(metrics: list[dict], path: str | Path | None = None, title: str | None = None):
    """Two panels from ``metrics.jsonl`` records: loss (train, test) and error % (train, test) per epoch.

    Epochs are numbered from 1 on the axis (the record of epoch index e is drawn at e + 1). The best test
    error is marked. Returns the figure, or the saved path when ``path`` is given.
    """
    epochs = [r["epoch"] + 1 for r in metrics]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label, style in (("train_loss", "train", "-"), ("test_loss", "test", "-")):
        ax_loss.plot(epochs, [r.get(key) for r in metrics], style, marker="." if len(epochs) < 30 else None,
                     label=label)  # fmt: skip
    losses = [r.get(k) for r in metrics for k in ("train_loss", "test_loss")]
    if all(v is not None and v > 0 for v in losses):
        ax_loss.set_yscale("log")  # early spikes would flatten the rest of the curve
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("loss")
    for key, label in (("train_acc", "train"), ("test_acc", "test")):
        ax_err.plot(epochs, [100.0 * (1.0 - r[key]) if r.get(key) is not None else None for r in metrics],
                    marker="." if len(epochs) < 30 else None, label=label)  # fmt: skip
    tested = [r for r in metrics if r.get("test_acc") is not None]
    if tested:
        best = min(tested, key=lambda r: 1.0 - r["test_acc"])
        err = 100.0 * (1.0 - best["test_acc"])
        ax_err.plot([best["epoch"] + 1], [err], "k*", label=f"best test {err:.2f}% (epoch {best['epoch'] + 1})")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error (%)")
    ax_err.set_title("error")
    for ax in (ax_loss, ax_err):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        return save_figure(fig, path)
    return fig


def plot_train_run(run_dir: str | Path) -> Path:
    """Draw ``curves.png`` of a training run from its own ``metrics.jsonl``."""
    from cellnas.runs import read_metrics

    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    if not metrics:
        from cellnas.errors import RunError

        raise RunError(f"{run_dir} has no metrics.jsonl records to plot")
    return plot_curves(metrics, run_dir / "curves.png", title=run_dir.name)
