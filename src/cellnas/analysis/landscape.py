"""Loss landscapes on a filter-normalised random plane (Li et al., NeurIPS 2018; Shu et al., ICLR 2020, SPEC 3.4).

Method, as in tomgoldstein/loss-landscape (``net_plotter.py``, ``plot_surface.py``), which Shu et al. reused:

* two Gaussian directions ``d1, d2`` with the shapes of the parameters (``dir_type=weights``), drawn in
  ``model.parameters()`` order, all of ``d1`` then all of ``d2``, from a CPU :class:`torch.Generator` seeded with
  ``seed`` (default 123, the reference's ``torch.manual_seed(123)``), so they do not depend on the device;
* **filter normalisation** (Li et al. 2018, Sec. 4): for every tensor with ``ndim > 1`` and every filter ``f``
  (a slice along dim 0), ``d[f] <- d[f] * ||theta[f]|| / (||d[f]|| + 1e-10)``; tensors with ``ndim <= 1``
  (biases, BN weight and bias) get direction 0 (``ignore=biasbn``);
* ``L(theta* + a d1 + b d2)`` and the accuracy on a grid (default 51 x 51 over [-1, 1]^2) on the test set, BN in eval
  mode with the loaded running statistics (the directions move parameters only, never BN buffers), under
  ``torch.no_grad``; mean cross-entropy over the evaluated images.

Grids are written to ``.npz`` files atomically every row (or every ``save_every`` points) and are resumable: a
killed run continues where it stopped, with the same directions from the same seed. The saved config (ranges,
seed, evaluation set, a fingerprint of the weights and one of the directions) must match, else a
:class:`~cellnas.errors.RunError` says so. Every grid point is computed from ``theta*`` afresh, so a resumed grid is
identical to an uninterrupted one. :func:`plane_grid` is the generic engine; gradient variance
(:mod:`cellnas.analysis.gradvar`) uses it over the same plane.

Also: the 1-D landscape along ``d1`` (its values equal the ``b = 0`` row of the 2-D grid) and the linear
interpolation ``theta(t) = (1 - t) theta_A + t theta_B`` between two trained networks (Goodfellow et al. 2015; Li
et al.'s ``--model_file2``), which moves every floating-point entry of the state dict, BN running statistics
included, and normalises nothing, except that running variances are clamped at 0 where extrapolation (t outside
[0, 1]) makes them negative (:func:`interpolation`).

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
>>> d1, d2 = plane_directions(net, seed=123)
>>> [tuple(t.shape) for t in d1], float(d1[1].abs().sum())   # the bias of the first layer gets direction 0
([(4, 3), (4,), (2, 4), (2,)], 0.0)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.errors import CellnasError, DataError, RunError
from cellnas.genotype import Genotype

__all__ = [
    "DEFAULT_SEED",
    "FILTER_EPS",
    "Grid",
    "EvalSet",
    "load_trained",
    "resolve_source",
    "evaluation_set",
    "make_batches",
    "random_direction",
    "filter_normalize",
    "plane_directions",
    "fingerprint",
    "axis",
    "plane_grid",
    "evaluate_batches",
    "loss_landscape",
    "interpolation",
    "load_grid",
]

log = logging.getLogger(__name__)

Seed = int | torch.Generator

DEFAULT_SEED = 123
"""The directions' seed of the reference scripts (``torch.manual_seed(123)``), SPEC 3.4."""

FILTER_EPS = 1e-10
"""The ``+ 1e-10`` of Li et al.'s ``normalize_direction``."""

GRID_FORMAT = "cellnas-grid"
GRID_VERSION = 1


# ------------------------------------------------------------------------------------------- trained networks


def resolve_source(path: str | Path) -> Path:
    """The file a RUN_OR_CHECKPOINT argument names: a run's ``final.pt``, else its ``checkpoint.pt``, or the file."""
    path = Path(path)
    if path.is_dir():
        for name in ("final.pt", "checkpoint.pt"):
            if (path / name).is_file():
                return path / name
        raise RunError(f"{path} holds neither final.pt nor checkpoint.pt; give a `cellnas train` run directory")
    if not path.is_file():
        raise RunError(f"{path} does not exist; give a `cellnas train` run directory or its final.pt")
    return path


def _infer_io(state: dict) -> tuple[str, int, int]:
    """Network kind, number of classes and input channels from the shapes of a state dict."""
    if "classifier.weight" not in state:
        raise RunError("the checkpoint's weights are not those of a cellnas evaluation network (no classifier)")
    num_classes = int(state["classifier.weight"].shape[0])
    if "stem.0.weight" in state:
        return "cifar", num_classes, int(state["stem.0.weight"].shape[1])
    if "stem0.0.weight" in state:
        return "imagenet", num_classes, int(state["stem0.0.weight"].shape[1])
    raise RunError("the checkpoint's weights are not those of a cellnas evaluation network (no stem)")


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Genotype, dict]:
    """Rebuild a trained evaluation network: ``(model in eval mode on device, genotype, meta)``.

    ``path``: a ``cellnas train`` run directory (its ``final.pt``, else the last ``checkpoint.pt`` of an unfinished
    run), a ``final.pt`` or a ``checkpoint.pt``. ``meta`` holds ``source`` (the file read), ``kind`` (``final`` or
    ``checkpoint``), ``network`` (constructor arguments), ``dataset`` (name, image_size, mean, std, num_classes,
    in_channels; mean/std are ``None`` for a checkpoint, which does not record them), ``config`` (the training
    config), ``epoch`` (epochs completed) and, for a checkpoint, ``step_in_epoch`` (steps done of the next epoch: a
    checkpoint taken mid-epoch 2 has ``epoch`` 1). Drop-path is switched off.
    """
    from cellnas.network import build_network

    source = resolve_source(path)
    if source.name != "checkpoint.pt":
        from cellnas.train import load_final

        model, doc = load_final(source, device)
        genotype = Genotype.from_dict(doc["genotype"])
        epoch = doc.get("test", {}).get("epoch")
        meta = {"source": str(source), "kind": "final", "network": dict(doc["network"]),
                "dataset": dict(doc["dataset"]), "config": dict(doc.get("config", {})),
                "epoch": None if epoch is None else int(epoch) + 1}  # fmt: skip
    else:
        try:
            state = torch.load(source, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
            raise RunError(f"cannot read {source} ({type(exc).__name__}); is it a cellnas train checkpoint?") from None
        if not isinstance(state, dict) or state.get("kind") != "train" or "model" not in state:
            raise RunError(f"{source} is not a cellnas train checkpoint (a search checkpoint holds no trained network)")
        cfg = dict(state["config"])
        kind, num_classes, in_channels = _infer_io(state["model"])
        genotype = Genotype.from_dict(state["genotype"])
        network = {"kind": kind, "C": int(cfg["channels"]), "layers": int(cfg["layers"]), "num_classes": num_classes,
                   "in_channels": in_channels, "auxiliary": bool(cfg["auxiliary"])}  # fmt: skip
        model = build_network(genotype, kind, num_classes=num_classes, C=network["C"], layers=network["layers"],
                              auxiliary=network["auxiliary"], in_channels=in_channels)  # fmt: skip
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise RunError(f"{source}: the weights do not fit the network of its config ({exc})") from None
        model = model.to(device).eval()
        meta = {"source": str(source), "kind": "checkpoint", "network": network,
                "dataset": {"name": cfg["dataset"], "image_size": cfg.get("image_size"), "mean": None, "std": None,
                            "num_classes": num_classes, "in_channels": in_channels},
                "config": cfg, "epoch": int(state.get("epoch", 0)),
                "step_in_epoch": int(state.get("step_in_epoch", 0))}  # fmt: skip
        log.warning("%s has no final.pt: using the checkpoint of an unfinished run, taken %s", source.parent,
                    _checkpoint_position(state))  # fmt: skip
    if hasattr(model, "drop_path_prob"):
        model.drop_path_prob = 0.0
    return model, genotype, meta


def _checkpoint_position(state: dict) -> str:
    """Where a train checkpoint was taken, as the training progress lines count it ("after step 3/23 of epoch
    2/2", "after epoch 1/2"): ``epoch`` counts the epochs done, so a mid-epoch checkpoint is in epoch ``epoch + 1``."""
    from cellnas.runs import position

    epoch, step = int(state.get("epoch", 0)), int(state.get("step_in_epoch", 0))
    epochs = state.get("config", {}).get("epochs", "?")
    loader = state.get("train_loader") or {}
    try:  # the loader's length (cellnas.data.loader), capped by --steps-per-epoch as the training loop caps it
        n, b = int(loader["num_samples"]), int(loader["batch_size"])
        steps = n // b if loader.get("drop_last") else -(-n // b)
        cap = state.get("config", {}).get("steps_per_epoch")
        steps = min(steps, int(cap)) if cap else steps
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        steps = "?"
    return position(epoch, step, steps, epochs)


# ------------------------------------------------------------------------------------------- evaluation data


@dataclass
class EvalSet:
    """Images (uint8, ``(N, C, H, W)``) and labels of one split, with the normalisation the network was trained with."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def evaluation_set(
    meta: dict,
    *,
    split: str = "test",
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
) -> EvalSet:
    """The ``split`` (``test`` or ``train``) of the dataset a network was trained on, or of ``dataset``.

    Images are resized to the training image size and normalised with the training constants (when the file
    records them). ``data_dir`` defaults to the training run's when the dataset is the same.
    """
    from cellnas.data import get_dataset

    if split not in ("test", "train"):
        raise CellnasError(f"--split must be test or train, got {split!r}")
    trained = meta["dataset"]
    name = dataset or trained["name"]
    if data_dir is None and name == trained["name"]:
        data_dir = meta.get("config", {}).get("data_dir")
    ds = get_dataset(name, data_dir=data_dir, download=download, image_size=trained.get("image_size"))
    if ds.num_classes != trained["num_classes"] or ds.in_channels != trained["in_channels"]:
        raise DataError(
            f"{name} has {ds.num_classes} classes and {ds.in_channels} input channels; the network was trained for "
            f"{trained['num_classes']} and {trained['in_channels']} (give the --dataset it was trained on)"
        )
    mean = trained.get("mean") or ds.mean
    std = trained.get("std") or ds.std
    images, labels = (ds.test_x, ds.test_y) if split == "test" else (ds.train_x, ds.train_y)
    return EvalSet(name, split, images, labels, tuple(mean), tuple(std))


def make_batches(
    data: EvalSet,
    batch_size: int = 256,
    *,
    subset: int | None = None,
    max_batches: int | None = None,
    seed: Seed = 0,
    device: str | torch.device = "cpu",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised evaluation batches, in order, built once and held on ``device`` (no augmentation).

    ``subset``: evaluate ``subset`` images drawn without replacement by a generator seeded with ``seed`` (kept in
    dataset order); ``max_batches``: keep only the first ``max_batches`` batches. Both cap the cost of each grid
    point.
    """
    from cellnas.data import normalize

    if batch_size < 1:
        raise CellnasError(f"--batch-size must be >= 1, got {batch_size}")
    n = len(data)
    idx = torch.arange(n)
    if subset is not None:
        if not 1 <= subset <= n:
            raise CellnasError(f"--subset must be between 1 and the {n} images of the {data.split} set, got {subset}")
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(n, generator=gen)[:subset].sort().values
    if max_batches is not None:
        if max_batches < 1:
            raise CellnasError(f"--max-batches must be >= 1, got {max_batches}")
        idx = idx[: max_batches * batch_size]
    batches = []
    for start in range(0, idx.numel(), batch_size):
        part = idx[start : start + batch_size]
        x = normalize(data.images.index_select(0, part).to(device), data.mean, data.std)
        batches.append((x, data.labels.index_select(0, part).to(device)))
    return batches


# ------------------------------------------------------------------------------------------- directions


def _generator(seed: Seed) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def filter_normalize(direction: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Filter normalisation of Li et al. 2018 (Sec. 4; ``normalize_directions_for_weights``, ``norm='filter'``,
    ``ignore='biasbn'``), SPEC 3.4.

    For a tensor with ``ndim > 1``, each filter ``d[f]`` (slice along dim 0) is rescaled to
    ``d[f] * ||w[f]|| / (||d[f]|| + 1e-10)``; a tensor with ``ndim <= 1`` (bias, BN weight/bias) becomes 0.
    Returns new tensors; the inputs are not modified.
    """
    if len(direction) != len(weights):
        raise ValueError(f"{len(direction)} direction tensors for {len(weights)} weights")
    out = []
    for d, w in zip(direction, weights):
        if d.shape != w.shape:
            raise ValueError(f"direction of shape {tuple(d.shape)} for a weight of shape {tuple(w.shape)}")
        if d.dim() <= 1:
            out.append(torch.zeros_like(d))
            continue
        w = w.detach().to(d.device, d.dtype)
        d_norm = d.flatten(1).norm(dim=1)  # (filters,)
        w_norm = w.flatten(1).norm(dim=1)
        scale = w_norm / (d_norm + FILTER_EPS)
        out.append(d * scale.view(-1, *([1] * (d.dim() - 1))))
    return out


def random_direction(weights: Sequence[torch.Tensor], seed: Seed = DEFAULT_SEED) -> list[torch.Tensor]:
    """One filter-normalised Gaussian direction for ``weights`` (Li et al. ``create_random_direction``).

    Drawn on the CPU in float32 (whatever the weights' device and dtype), so a seed gives the same draw everywhere;
    normalised on the CPU in the weights' dtype, then moved to their device. A :class:`torch.Generator` passed as
    ``seed`` is used and advanced.
    """
    gen = _generator(seed)
    raw = [torch.randn(tuple(w.shape), generator=gen, dtype=torch.float32).to(w.dtype) for w in weights]
    cpu_weights = [w.detach().cpu() for w in weights]
    return [d.to(w.device) for d, w in zip(filter_normalize(raw, cpu_weights), weights)]


def plane_directions(
    model: nn.Module | Sequence[torch.Tensor], seed: Seed = DEFAULT_SEED, n: int = 2
) -> list[list[torch.Tensor]]:
    """``n`` filter-normalised directions over ``model.parameters()`` (or the given tensors) from one stream.

    ``d1`` comes first, so ``n=1`` gives the ``d1`` of ``n=2`` with the same seed (SPEC 3.4).
    """
    weights = list(model.parameters()) if isinstance(model, nn.Module) else list(model)
    gen = _generator(seed)
    return [random_direction(weights, gen) for _ in range(n)]


def fingerprint(tensors: Sequence[torch.Tensor]) -> str:
    """A short SHA-256 of the tensors' shapes and bytes: detects other weights or directions on resume."""
    h = hashlib.sha256()
    for t in tensors:
        a = t.detach().cpu().contiguous()
        h.update(str((tuple(a.shape), str(a.dtype))).encode())
        h.update(a.view(-1).view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------- the grid engine


def axis(lo: float, hi: float, num: int) -> np.ndarray:
    """``np.linspace(lo, hi, num)``, the reference's ``--x=lo:hi:num``; ``lo``, ``hi`` and ``hi - lo`` must be finite
    (an infinite range gives a grid of NaN points)."""
    if num < 1:
        raise CellnasError(f"the grid resolution must be >= 1, got {num}")
    if not all(np.isfinite(v) for v in (lo, hi, float(hi) - float(lo))):
        raise CellnasError(f"the range must have finite bounds, got {lo}:{hi}")
    if num > 1 and not hi > lo:
        raise CellnasError(f"the range must have lo < hi, got {lo}:{hi}")
    return np.linspace(float(lo), float(hi), int(num))


@dataclass
class Grid:
    """A (possibly partial) grid: ``values[name]`` has shape ``(len(ys), len(xs))`` (row ``i`` is ``b = ys[i]``),
    NaN where ``done`` is False. 1-D grids have ``ys == [0.0]``."""

    xs: np.ndarray
    ys: np.ndarray
    values: dict[str, np.ndarray]
    done: np.ndarray
    seed: int
    config: dict
    path: Path | None = None

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


def _grid_arrays(grid: Grid) -> dict:
    return {
        "format": np.array(GRID_FORMAT),
        "version": np.array(GRID_VERSION),
        "xs": grid.xs,
        "ys": grid.ys,
        "done": grid.done,
        "seed": np.array(grid.seed, dtype=np.int64),
        "config": np.array(json.dumps(grid.config, sort_keys=True)),
        "keys": np.array(sorted(grid.values)),
        **grid.values,
    }


def _save_grid(grid: Grid, path: Path) -> None:
    import io

    from cellnas.runs import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **_grid_arrays(grid))
    atomic_write_bytes(path, buf.getvalue())


def load_grid(path: str | Path) -> Grid:
    """Read a grid written by :func:`plane_grid` (no pickles)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != GRID_FORMAT:
                raise KeyError("format")
            if int(z["version"]) != GRID_VERSION:
                raise RunError(f"{path} is a grid of version {int(z['version'])}; this cellnas reads {GRID_VERSION}")
            keys = [str(k) for k in z["keys"]]
            return Grid(xs=z["xs"], ys=z["ys"], values={k: z[k] for k in keys}, done=z["done"],
                        seed=int(z["seed"]), config=json.loads(str(z["config"])), path=path)  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"cannot read {path} as a cellnas grid ({type(exc).__name__}); remove it or use --restart") \
            from None


def _config_diff(saved: dict, current: dict) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def plane_grid(
    evaluate: Callable[[], dict[str, float]],
    targets: Sequence[torch.Tensor],
    directions: Sequence[Sequence[torch.Tensor]],
    xs: np.ndarray,
    ys: np.ndarray | None = None,
    *,
    seed: int = -1,
    config: dict | None = None,
    path: str | Path | None = None,
    save_every: int | None = None,
    restart: bool = False,
    progress: bool = True,
    desc: str = "grid",
) -> Grid:
    """Evaluate ``evaluate()`` at ``origin + x d1 (+ y d2)`` for every grid point, resumably.

    ``targets``: the tensors to move (parameters, or state-dict entries for interpolation); their current values are
    the origin and are restored on return, error or Ctrl-C. ``directions``: one (1-D, ``ys`` must be ``None``) or
    two lists aligned with ``targets``. ``evaluate`` returns a dict of floats; each key becomes an array of the
    grid. Points are visited row by row (``b`` outer, ``a`` inner). With ``path``, the grid is written atomically
    after every ``save_every`` points (default: every row) and when the loop stops for any reason; an existing
    file is continued if its ``config`` (plus the grid axes and seed) matches, else :class:`RunError`
    (``restart=True`` discards it).
    """
    from tqdm.auto import tqdm

    targets = list(targets)
    if ys is None:
        if len(directions) != 1:
            raise ValueError("a 1-D grid takes one direction")
        ys = np.zeros(1)
    elif len(directions) != 2:
        raise ValueError("a 2-D grid takes two directions")
    for d in directions:
        if len(d) != len(targets) or any(a.shape != b.shape for a, b in zip(d, targets)):
            raise ValueError("each direction must have one tensor per target, of the same shape")
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    full_config = {
        **(config or {}), "xs": [float(xs[0]), float(xs[-1]), len(xs)], "ys": [float(ys[0]), float(ys[-1]), len(ys)],
        "dims": len(directions), "seed": int(seed), "origin": fingerprint(targets),
        "directions": fingerprint([t for d in directions for t in d]),
    }  # fmt: skip
    full_config = json.loads(json.dumps(full_config))  # tuples -> lists, as the saved copy reads back
    path = Path(path) if path is not None else None
    grid = None
    if path is not None and path.exists() and not restart:
        grid = load_grid(path)
        diff = _config_diff(grid.config, full_config)
        if diff:
            raise RunError(f"{path} was computed with other settings ({'; '.join(diff)}); use the same options, "
                           "another --output, or --restart to discard it")  # fmt: skip
        log.info("resuming %s: %d of %d points done", path, int(grid.done.sum()), grid.done.size)
    if grid is None:
        grid = Grid(xs=xs, ys=ys, values={}, done=np.zeros((len(ys), len(xs)), dtype=bool), seed=int(seed),
                    config=full_config, path=path)  # fmt: skip
    every = save_every or len(xs)
    origin = [t.detach().clone() for t in targets]
    todo = [(i, j) for i in range(len(ys)) for j in range(len(xs)) if not grid.done[i, j]]
    unsaved = 0
    bar = tqdm(total=grid.done.size, initial=grid.done.size - len(todo), desc=desc, unit="pt", leave=False,
               disable=not progress, dynamic_ncols=True)  # fmt: skip
    try:
        for i, j in todo:
            with torch.no_grad():
                for t, o, *ds in zip(targets, origin, *directions):
                    t.copy_(o)
                    t.add_(ds[0], alpha=float(xs[j]))
                    if len(ds) > 1:
                        t.add_(ds[1], alpha=float(ys[i]))
            values = evaluate()
            for key, value in values.items():
                if key not in grid.values:
                    grid.values[key] = np.full(grid.done.shape, np.nan)
                grid.values[key][i, j] = float(value)
            grid.done[i, j] = True
            unsaved += 1
            bar.update(1)
            if path is not None and (unsaved >= every or (j == len(xs) - 1 and save_every is None)):
                _save_grid(grid, path)
                unsaved = 0
    finally:
        bar.close()
        with torch.no_grad():
            for t, o in zip(targets, origin):
                t.copy_(o)
        if path is not None and unsaved:
            _save_grid(grid, path)
    return grid


# ------------------------------------------------------------------------------------------- loss landscapes


def _logits(out):
    """The logits of ``out`` (or of ``(logits, aux)``), at least in float32."""
    logits = out[0] if isinstance(out, (tuple, list)) else out
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (as it is: call ``eval()`` first) over ``batches``.

    The model may return logits or ``(logits, aux)`` as the cellnas networks do. Where the loss is not finite (NaN or
    infinite logits, e.g. far out on a landscape) the accuracy is NaN too: the argmax of NaN logits is an arbitrary
    class, which would read as a chance-level accuracy that was never measured.
    """
    total, correct, loss = 0, 0, 0.0
    for x, y in batches:
        logits = _logits(model(x))
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    loss /= max(total, 1)
    return loss, (correct / max(total, 1) if np.isfinite(loss) else float("nan"))


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def loss_landscape(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    *,
    xs: np.ndarray | None = None,
    ys: np.ndarray | None = None,
    one_d: bool = False,
    seed: int = DEFAULT_SEED,
    evaluate: Callable[[], dict[str, float]] | None = None,
    config: dict | None = None,
    path: str | Path | None = None,
    save_every: int | None = None,
    restart: bool = False,
    progress: bool = True,
) -> Grid:
    """Loss (``losses``) and accuracy (``accuracies``) on the filter-normalised random plane (SPEC 3.4).

    Defaults: 51 x 51 over [-1, 1]^2 and seed 123. ``one_d``: the 1-D landscape along ``d1`` only (``ys`` ignored).
    The model is evaluated in eval mode on ``batches`` (see :func:`make_batches`); ``evaluate`` replaces that
    with any function of the model's current weights returning a dict (the analytic tests use a known quadratic).
    See :func:`plane_grid` for ``path``/``save_every``/``restart``.
    """
    xs = axis(-1, 1, 51) if xs is None else np.asarray(xs, dtype=np.float64)
    ys = None if one_d else (axis(-1, 1, 51) if ys is None else np.asarray(ys, dtype=np.float64))
    if evaluate is None:
        if batches is None:
            raise ValueError("loss_landscape needs batches or an evaluate function")

        def evaluate() -> dict[str, float]:
            loss, acc = evaluate_batches(model, batches)
            return {"losses": loss, "accuracies": acc}

    params = list(model.parameters())
    directions = plane_directions(params, seed, n=1 if one_d else 2)
    cfg = {"kind": "landscape-1d" if one_d else "landscape", **(config or {})}
    with _eval_mode(model):
        return plane_grid(evaluate, params, directions, xs, ys, seed=seed, config=cfg, path=path,
                          save_every=save_every, restart=restart, progress=progress,
                          desc="1-D landscape" if one_d else "landscape")  # fmt: skip


def value_at_origin(grid: Grid, name: str = "losses") -> float | None:
    """``grid[name]`` at the grid point (0, 0) (theta* itself), or ``None`` when the grid has no such point (an even
    resolution over a symmetric range) or it is not computed yet."""
    i = np.flatnonzero(np.isclose(grid.ys, 0.0, rtol=0.0, atol=1e-12))
    j = np.flatnonzero(np.isclose(grid.xs, 0.0, rtol=0.0, atol=1e-12))
    if not (i.size and j.size) or not grid.done[i[0], j[0]]:
        return None
    return float(grid[name][i[0], j[0]])


def evaluate_model(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Loss and accuracy of ``model`` as it is (theta*), in eval mode (restored afterwards)."""
    with _eval_mode(model):
        return evaluate_batches(model, batches)


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


RUNNING_VAR = "running_var"
"""The state-dict suffix of BatchNorm's running variance, the one entry that must stay non-negative."""


def interpolation(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    *,
    ts: np.ndarray | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
    clamp_variances: bool = True,
    config: dict | None = None,
    path: str | Path | None = None,
    save_every: int | None = None,
    restart: bool = False,
    progress: bool = True,
) -> Grid:
    """Loss and accuracy along ``theta(t) = theta_A + t (theta_B - theta_A)`` (default t in linspace(-0.5, 1.5, 51)).

    Every floating-point state-dict entry moves (weights and BN running statistics, Li et al.'s
    ``dir_type=states``), without normalisation; ``model_a`` is evaluated and restored afterwards. Both networks
    must have the same architecture.

    **Running variances are clamped at 0** (``clamp_variances``, the default): for t in [0, 1] the interpolated
    variance is a convex combination of two variances and never negative, but extrapolating (t < 0 or t > 1) makes
    some negative, and BN then takes the square root of a negative number: NaN losses and a meaningless accuracy.
    Clamping is the projection onto the valid variances (BN's ``eps`` keeps the division finite), changes nothing
    inside [0, 1], and is recorded in the grid's config (``bn_running_var``); the array ``clamped_variances`` counts
    the running-variance entries clamped at each point. Li et al.'s code does not clamp.
    """
    sa, sb = _float_state(model_a), _float_state(model_b)
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise CellnasError("cannot interpolate between networks of different architectures (state dicts differ)")
    targets = list(sa.values())
    direction = [sb[k].detach().to(sa[k].device, sa[k].dtype) - sa[k].detach() for k in sa]
    ts = axis(-0.5, 1.5, 51) if ts is None else np.asarray(ts, dtype=np.float64)
    if evaluate is None:
        if batches is None:
            raise ValueError("interpolation needs batches or an evaluate function")

        def evaluate() -> dict[str, float]:
            loss, acc = evaluate_batches(model_a, batches)
            return {"losses": loss, "accuracies": acc}

    # the state dict's tensors share storage with the buffers, so clamping them clamps what BN reads
    variances = [sa[k] for k in sa if k.rsplit(".", 1)[-1] == RUNNING_VAR] if clamp_variances else []
    measure = evaluate

    def evaluate_clamped() -> dict[str, float]:
        with torch.no_grad():
            clamped = sum(int((v < 0).sum()) for v in variances)
            for v in variances:
                v.clamp_(min=0.0)
        return {**measure(), "clamped_variances": float(clamped)}

    cfg = {"kind": "interpolate", "bn_running_var": "clamped at 0" if clamp_variances else "as interpolated",
           **(config or {})}  # fmt: skip
    with _eval_mode(model_a):
        return plane_grid(evaluate_clamped if clamp_variances else evaluate, targets, [direction], ts, None,
                          config=cfg, path=path, save_every=save_every, restart=restart, progress=progress,
                          desc="interpolation")  # fmt: skip
