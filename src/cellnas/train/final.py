"""``final.pt``: a trained network that describes itself, and its evaluation on a test set (SPEC 2.2).

``final.pt`` holds the weights with everything needed to rebuild the network without any other file
(the nanoGPT habit of checkpoints that carry their constructor arguments): the genotype as a native dict,
the constructor arguments (network kind, C, layers, num_classes, in_channels, auxiliary), the dataset it was
trained on with its normalisation constants, image size, class names (``classes``, ``None`` when the dataset
has none; files written before it was recorded lack the key) and, for an image folder, its train/test split
(``split``: rule and a fingerprint of the test files, :attr:`cellnas.data.Dataset.split`; ``None`` for the fixed
splits of CIFAR and digits; files written before it lack the key and were split by ``permutation-v0``), the
resolved training config, and the test
metrics recorded at the end of training. It is read with ``torch.load(weights_only=True)``: plain tensors and
containers only, so loading a file cannot run code.

>>> result = evaluate("runs/train-x/final.pt", dataset="digits")  # doctest: +SKIP
>>> result["test_acc"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cellnas.errors import RunError
from cellnas.genotype import Genotype
from cellnas.runs import atomic_torch_save

if TYPE_CHECKING:
    from cellnas.data import Dataset

__all__ = ["FINAL", "save_final", "load_final", "test_metrics", "evaluate"]

log = logging.getLogger(__name__)

FINAL = "final.pt"
FINAL_FORMAT = "cellnas-final"
FINAL_VERSION = 1


@torch.no_grad()
def test_metrics(
    forward: Callable, model: torch.nn.Module, loader: Iterable, autocast: Callable | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over one full pass of ``loader`` (BN in eval mode, no graphs).

    ``forward`` is ``model`` itself or its compiled wrapper; the model returns ``(logits, aux)`` and the
    auxiliary head does not run in eval mode.
    """
    import contextlib

    was_training = model.training
    model.eval()
    total, correct, loss = 0, 0, 0.0
    with torch.inference_mode(), (autocast() if autocast else contextlib.nullcontext()):
        for x, y in loader:
            logits, _ = forward(x)
            logits = logits.float()
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += y.numel()
    model.train(was_training)
    return loss / max(total, 1), correct / max(total, 1)


def save_final(
    path: str | Path, model: torch.nn.Module, genotype: Genotype, network: dict, dataset: Dataset, config: dict,
    test: dict,
) -> Path:  # fmt: skip
    """Write ``final.pt`` atomically (see the module docstring for its contents)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_torch_save(
        {
            "format": FINAL_FORMAT,
            "version": FINAL_VERSION,
            "genotype": genotype.to_dict(),
            "network": dict(network),
            "dataset": {
                "name": dataset.name, "image_size": int(dataset.image_size), "mean": list(dataset.mean),
                "std": list(dataset.std), "num_classes": int(dataset.num_classes),
                "in_channels": int(dataset.in_channels),
                "classes": None if dataset.classes is None else [str(c) for c in dataset.classes],
                "split": dataset.split,
            },
            "config": config,
            "test": dict(test),
            "state_dict": state,
        },
        path,
    )  # fmt: skip


def _rebuild_hint(path: Path) -> str:
    """How to write a damaged ``final.pt`` again: resume its training run, whose checkpoint holds the final weights
    (:func:`cellnas.train.train` rebuilds an unreadable ``final.pt`` of a finished run); ``""`` when ``path`` is not
    in a training run directory with a checkpoint."""
    from cellnas.runs import run_kind

    run_dir = path.parent
    checkpoint = run_dir / "checkpoint.pt"
    if path.name != FINAL or not checkpoint.is_file() or run_kind(run_dir) != "train":
        return ""
    resume = run_dir.parent if (run_dir.parent / "seeds.json").is_file() else run_dir  # a --seeds run resumes whole
    return f"; write it again from {checkpoint} with `cellnas train --resume {resume}`"


def load_final(
    path: str | Path, device: str | torch.device = "cpu", *, hint: bool = True
) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network stored in ``final.pt``; returns ``(model in eval mode on device, the file's dict)``.

    A file that cannot be read, or that is no final.pt of this cellnas, raises :class:`RunError` in one line; with
    ``hint``, one in a training run directory says how to write it again (``cellnas train --resume DIR``)."""
    from cellnas.network import build_network

    path = Path(path)
    if path.is_dir():
        path = path / FINAL
    if not path.is_file():
        seeds = sorted(d.name for d in path.parent.glob("seed-*") if (d / FINAL).is_file())
        if path.name == FINAL and seeds:
            raise RunError(f"{path.parent} is the parent of a --seeds run: give one of its seed folders "
                           f"({', '.join(seeds)}), or test them all with `cellnas evaluate {path.parent}`")
        raise RunError(f"{path} does not exist; give the final.pt of a finished `cellnas train` run")
    rebuild = _rebuild_hint(path) if hint else ""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        raise RunError(f"cannot read {path}: not a readable cellnas final.pt ({type(exc).__name__}){rebuild}") from None
    if not isinstance(doc, dict) or doc.get("format") != FINAL_FORMAT:
        raise RunError(f"{path} is not a cellnas final.pt (no '{FINAL_FORMAT}' marker){rebuild}")
    if doc.get("version") != FINAL_VERSION:
        raise RunError(f"{path} has final.pt version {doc.get('version')}; this cellnas reads version {FINAL_VERSION}")
    net = doc["network"]
    model = build_network(
        Genotype.from_dict(doc["genotype"]), net["kind"], num_classes=net["num_classes"], C=net["C"],
        layers=net["layers"], auxiliary=net["auxiliary"], in_channels=net["in_channels"],
    )  # fmt: skip
    try:
        model.load_state_dict(doc["state_dict"])
    except RuntimeError as exc:
        raise RunError(f"{path}: the weights do not fit the stored network arguments ({exc}){rebuild}") from None
    return model.to(device).eval(), doc


def evaluate(
    path: str | Path,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    *,
    batch_size: int | None = None,
    device: str = "auto",
    download: bool = False,
    datasets: dict | None = None,
) -> dict:
    """Test a trained ``final.pt`` on ``dataset``'s test set (default: the dataset it was trained on).

    Images are resized to the training image size and normalised with the training constants stored in the
    file. ``data_dir`` defaults to the training run's when the dataset is the same. Only the test set is read
    where the dataset allows it (CIFAR: ``test_batch`` alone). ``datasets``, a dict kept between calls, holds the
    datasets already loaded (keyed by name, folder and image size), so that testing several networks reads the
    data once. When ``final.pt`` records the training class names and they differ from the test set's (a
    network for cat/dog scored on a/b), a warning names both. Returns a dict with
    ``test_loss``, ``test_acc``, ``test_error`` (fractions), ``n_test``, ``params`` and what was tested.
    The pass runs in fp32 NCHW: for a CPU fp32 run it reproduces the test accuracy recorded at the end of
    training exactly; a run tested under bf16 autocast during training may differ slightly.
    """
    from cellnas.counting import count_params
    from cellnas.data import DeviceLoader, get_dataset
    from cellnas.errors import DataError
    from cellnas.schedule import resolve_device

    dev = resolve_device(device)
    model, doc = load_final(path, dev)
    trained = doc["dataset"]
    name = dataset or trained["name"]
    if data_dir is None and name == trained["name"]:
        data_dir = doc["config"].get("data_dir")
    key = (name, None if data_dir is None else str(Path(data_dir).expanduser().resolve()), trained["image_size"])
    ds = None if datasets is None else datasets.get(key)
    if ds is None:
        ds = get_dataset(name, data_dir=data_dir, download=download, image_size=trained["image_size"], train=False,
                         split_rule=_split_rule(trained) if name == trained["name"] else None)  # fmt: skip
        if datasets is not None:
            datasets[key] = ds
    if ds.num_classes != trained["num_classes"] or ds.in_channels != trained["in_channels"]:
        raise DataError(
            f"{name} has {ds.num_classes} classes and {ds.in_channels} input channels; the network in {path} was "
            f"trained for {trained['num_classes']} and {trained['in_channels']}"
        )
    _warn_if_other_classes(path, trained.get("classes"), name, ds.classes)
    bs = batch_size or int(doc["config"].get("eval_batch_size") or 256)
    loader = DeviceLoader(ds.test_x, ds.test_y, bs, mean=trained["mean"], std=trained["std"], augment=None,
                          shuffle=False, device=dev)  # fmt: skip
    loss, acc = test_metrics(model, model, loader)
    log.debug("%s on %s: test loss %.4f, accuracy %.4f", path, name, loss, acc)
    return {
        "path": str(path),
        "dataset": name,
        "n_test": ds.n_test,
        "test_loss": loss,
        "test_acc": acc,
        "test_error": 1.0 - acc,
        "params": count_params(model, exclude_aux=True),
        "trained_on": trained["name"],
        "recorded_test": doc.get("test", {}),
    }


#: (trained classes, tested classes) pairs already warned about: once per process, not once per seed.
_WARNED_CLASSES: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()


def _names(classes: list[str], most: int = 10) -> str:
    shown = ", ".join(classes[:most])
    return shown if len(classes) <= most else f"{shown}, ... ({len(classes)} in all)"


def _split_rule(trained: dict) -> str | None:
    """The rule that split the image folder ``trained`` (``final.pt``'s ``dataset``) into train and test: the recorded
    one, or ``permutation-v0`` for a ``final.pt`` written before splits were recorded (the rule of that time), so that
    the network is tested on the images it was not trained on; ``None`` for other datasets and folder layouts."""
    from cellnas.data.imagefolder import LEGACY_SPLIT_RULE, SPLIT_RULES

    if not str(trained.get("name", "")).startswith("imagefolder:"):
        return None
    if "split" not in trained:
        return LEGACY_SPLIT_RULE
    split = trained["split"]
    rule = split.get("rule") if isinstance(split, dict) else None
    return rule if rule in SPLIT_RULES else None


def _warn_if_other_classes(path, trained: list[str] | None, name: str, tested: list[str] | None) -> None:
    """Warn when the class names recorded at training differ from those of the test set (same count, checked
    before): label i of the one is scored as label i of the other."""
    if trained is None or tested is None:
        return
    trained, tested = [str(c) for c in trained], [str(c) for c in tested]
    key = (tuple(trained), tuple(tested))
    if trained == tested or key in _WARNED_CLASSES:
        return
    _WARNED_CLASSES.add(key)
    if sorted(trained) == sorted(tested):
        how = "the same classes in another order"
    else:
        how = f"classes {_names(tested)}"
    log.warning("the network in %s was trained on classes %s, but %s has %s: each class index is scored as the "
                "class of that index in the test set, so the accuracy compares different classes",
                path, _names(trained), name, how)  # fmt: skip
