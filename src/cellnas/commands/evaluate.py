"""``cellnas evaluate``: test a trained ``final.pt`` on a dataset's test set (SPEC 2.2).

``final.pt`` carries the genotype and the network's constructor arguments, so nothing else is needed. The
parent directory of a ``cellnas train --seeds`` run tests every seed and adds the mean ± std over seeds.

Two checks before testing:

* a ``checkpoint.pt`` (or a run directory holding one but no ``final.pt``) is refused with what to do instead: a
  training checkpoint is an unfinished run, finished with ``cellnas train --resume DIR`` (which writes ``final.pt``);
  a search checkpoint has no final network at all. Testing a checkpoint's weights directly is not offered: they are
  the weights of an unfinished schedule, and the checkpoint is a full pickle that cannot be read safely;
* an image folder's test split is compared with the one recorded at training (:attr:`cellnas.data.Dataset.split` in
  ``final.pt``): when files were added, removed or renamed so that the test files differ, or when ``final.pt``
  records no split, a warning says that the test set may hold images the network was trained on. The ``--json``
  report then has ``test_split``: ``unchanged``, ``changed`` or ``unrecorded``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["register", "run"]


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test a trained network (final.pt of `cellnas train`) on a test set",
        description=(
            "Rebuild the network stored in FINAL (the final.pt of a `cellnas train` run, or its run directory)\n"
            "and report its loss, accuracy and error on the test set of --dataset (default: the dataset it was\n"
            "trained on), with BN in eval mode and the training run's normalisation constants. Given the parent\n"
            "directory of a `cellnas train --seeds` run, test every seed-S/final.pt and report each seed and the\n"
            "mean +- std (sample standard deviation) over seeds.\n\n"
            "An image folder (imagefolder:PATH) is tested on the images its split holds out: a file is a test\n"
            "file when a hash of its path inside PATH (seed 0) falls below 0.2, about 20 % of each class, and it\n"
            "keeps its side when other files come or go (a class to which the hash gives no test file has its\n"
            "lowest-hash file tested). PATH/train/ beside PATH/test/ or PATH/val/ is used as given. final.pt\n"
            "records a fingerprint of the test files; when the folder's test files differ from it, a warning says\n"
            "that the test set may include training images (--json: \"test_split\": \"changed\"). A checkpoint.pt\n"
            "is not a final.pt: finish its run with `cellnas train --resume DIR` first.\n\n"
            "examples:\n  cellnas evaluate runs/train-20250101-120000/final.pt\n"
            "  cellnas evaluate final.pt --dataset cifar10 --data-dir data --json\n"
            "  cellnas evaluate runs/train-20250101-120000   # a --seeds 0,1,2 run: seeds 0, 1, 2 and mean +- std"
        ),
        formatter_class=formatter,
    )
    p.add_argument("final", metavar="FINAL", help="a final.pt file, a run directory holding one, or the parent "
                                                  "directory of a --seeds run")
    p.add_argument("--dataset", default=None, help="dataset whose test set to use (default: the training dataset)")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="where the dataset files are (default: the training run's, else ./data)")
    p.add_argument("--download", action="store_true", help="download a missing CIFAR archive")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="test batch size (default: training's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of torch (default: torch's choice; 1 is often fastest on a shared machine)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.commands.train import set_threads
    from cellnas.errors import CellnasError
    from cellnas.train import evaluate, evaluate_seeds
    from cellnas.train.final import FINAL
    from cellnas.train.seeds import seed_runs

    set_threads(args.threads)

    if args.batch_size is not None and args.batch_size < 1:
        raise CellnasError(f"--batch-size must be >= 1, got {args.batch_size}")
    options = dict(batch_size=args.batch_size, device=args.device, download=args.download)
    path = Path(args.final)
    if path.is_dir() and not (path / FINAL).is_file() and seed_runs(path):
        split = _check_test_split([run_dir / FINAL for _, run_dir in seed_runs(path)], args.dataset)
        report = evaluate_seeds(path, args.dataset, args.data_dir, **options)
        if split is not None:
            report["test_split"] = split
        return _report_seeds(report, args.json)
    _refuse_unfinished(path)
    split = _check_test_split([path / FINAL if path.is_dir() else path], args.dataset)
    report = evaluate(args.final, args.dataset, args.data_dir, **options)
    if split is not None:
        report["test_split"] = split
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model        {report['path']} (trained on {report['trained_on']}, {report['params']:,} parameters)")
    print(f"test set     {report['dataset']}, {report['n_test']} images")
    print(f"test loss    {report['test_loss']:.4f}")
    print(f"test acc     {100 * report['test_acc']:.2f} %")
    print(f"test error   {100 * report['test_error']:.2f} %")
    return 0


def _report_seeds(report: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    for r in report["runs"]:
        print(f"seed {r['seed']:<7} test error {100 * r['test_error']:.2f} %, acc {100 * r['test_acc']:.2f} %, "
              f"loss {r['test_loss']:.4f}  {r['path']}")  # fmt: skip
    err, acc, loss = report["test_error"], report["test_acc"], report["test_loss"]
    print(f"model        {report['path']} ({err['n']} seeds, trained on {report['trained_on']}, "
          f"{report['params']:,} parameters)")  # fmt: skip
    print(f"test set     {report['dataset']}, {report['n_test']} images")
    if err["n"] == 1:  # a sample standard deviation needs two seeds
        print(f"test loss    {loss['mean']:.4f}")
        print(f"test acc     {100 * acc['mean']:.2f} %")
        print(f"test error   {100 * err['mean']:.2f} % (one seed: no std)")
        return 0
    print(f"test loss    {loss['mean']:.4f} +- {loss['std']:.4f}")
    print(f"test acc     {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} %")
    print(f"test error   {100 * err['mean']:.2f} +- {100 * err['std']:.2f} % "
          f"(mean +- sample std over {err['n']} seeds)")  # fmt: skip
    return 0


# --------------------------------------------------------------------------------------------- checkpoints


def _refuse_unfinished(path: Path) -> None:
    """A one-line error for a ``checkpoint.pt``, or a run directory holding one without ``final.pt``: a final.pt is
    written when a training run ends, so the answer is to finish the run (or, for a search, to train its cell)."""
    from cellnas.errors import RunError
    from cellnas.train.final import FINAL
    from cellnas.train.loop import CHECKPOINT

    if path.is_dir():
        if not (path / FINAL).is_file() and (path / CHECKPOINT).is_file():
            kind = _checkpoint_kind(path / CHECKPOINT)
            if kind is not None:
                raise RunError(_unfinished_message(path / CHECKPOINT, kind, given_dir=True))
        return
    if path.is_file():
        kind = _checkpoint_kind(path)
        if kind is not None:
            raise RunError(_unfinished_message(path, kind, given_dir=False))


def _unfinished_message(checkpoint: Path, kind: str, given_dir: bool) -> str:
    from cellnas.train.final import FINAL

    run_dir = checkpoint.parent
    kind_name = "training" if kind == "train" else kind
    if given_dir:
        what = f"{run_dir} holds a {kind_name} checkpoint but no {FINAL}"
    else:
        what = f"{checkpoint} is a {kind_name} checkpoint, not a {FINAL}"
    if kind == "search":
        return (f"{what}: a search trains no final network; train its cell with `cellnas train {run_dir}`, then "
                f"evaluate that run")  # fmt: skip
    if (run_dir / FINAL).is_file():
        return f"{what}: the run finished, evaluate {run_dir / FINAL} (or give the directory {run_dir})"
    resume = run_dir.parent if (run_dir.parent / "seeds.json").is_file() else run_dir  # a --seeds run resumes whole
    return (f"{what}: the training run in {run_dir} has not finished ({FINAL} is written when it ends); finish it "
            f"with `cellnas train --resume {resume}`, then `cellnas evaluate {run_dir}`")


def _checkpoint_kind(path: Path) -> str | None:
    """``"train"`` or ``"search"`` when ``path`` is a cellnas ``checkpoint.pt``, else ``None``.

    Read from the opcodes of the pickle inside the torch zip file, building no object: a checkpoint holds more than
    ``torch.load(weights_only=True)`` admits, and loading it in full could run code from the file.
    """
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"), None)
            if name is None:
                return None
            data = archive.read(name)
        strings = [arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    except Exception:  # noqa: BLE001 - anything unreadable is left to load_final's own message
        return None
    if "kind" not in strings or "train_loader" not in strings:
        return None
    i = strings.index("kind")  # the top-level key: a checkpoint's first string keys are "version"/"kind"
    kind = strings[i + 1] if i + 1 < len(strings) else None
    return kind if kind in ("train", "search") else None


# --------------------------------------------------------------------------------------------- image-folder splits


def _check_test_split(finals: list[Path], dataset: str | None) -> str | None:
    """Compare the test split each ``final.pt`` recorded for its image folder with the folder's split now (file
    names only, no image read) and warn when they differ or nothing was recorded. Returns ``"unchanged"``,
    ``"changed"`` or ``"unrecorded"`` (the worst over ``finals``), or ``None`` when the test set is not the training
    image folder (another dataset, or a file that cannot be read: :func:`evaluate` then says why)."""
    from cellnas.data import imagefolder_split, split_mismatch

    states, current, warned = [], {}, set()
    for final in finals:
        trained = _dataset_record(final)
        if trained is None or not str(trained.get("name", "")).startswith("imagefolder:"):
            continue
        folder = Path(trained["name"].split(":", 1)[1]).expanduser()
        if dataset is not None and not _same_folder(dataset, folder):
            continue  # another dataset, chosen on purpose: there is no training split to compare with
        recorded = trained.get("split")
        key = str(folder)
        if recorded is None and key not in current:
            current[key] = imagefolder_split(folder)
        if recorded is None and current[key].get("rule") == "folders":
            states.append("unchanged")  # PATH/train beside PATH/test: used as given, then as now
            continue
        if recorded is None:
            states.append("unrecorded")
            if "unrecorded" not in warned:
                warned.add("unrecorded")
                log.warning("%s records no test split of image folder %s (it was trained before cellnas recorded "
                            "one): it is tested on the split of that time, a seeded permutation of each class; if "
                            "files were added or removed since, the test set may include images the network was "
                            "trained on", final, folder)  # fmt: skip
            continue
        if key not in current:
            current[key] = imagefolder_split(folder)
        why = split_mismatch(recorded, current[key])
        states.append("unchanged" if why is None else "changed")
        if why is not None and (key, why) not in warned:
            warned.add((key, why))
            log.warning("the test split of image folder %s is not the one %s was trained with (%s; files were added, "
                        "removed or renamed): the test set may include images the network was trained on, and its "
                        "accuracy is not comparable with the recorded one", folder, final, why)  # fmt: skip
    for state in ("changed", "unrecorded", "unchanged"):
        if state in states:
            return state
    return None


def _dataset_record(final: Path) -> dict | None:
    """The ``dataset`` entry of ``final.pt`` (memory-mapped: the weights are not read), or ``None``."""
    import torch

    try:
        doc = torch.load(final, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_final
        return None
    trained = doc.get("dataset") if isinstance(doc, dict) else None
    return trained if isinstance(trained, dict) else None


def _same_folder(dataset: str, folder: Path) -> bool:
    if not dataset.startswith("imagefolder:"):
        return False
    try:
        return Path(dataset.split(":", 1)[1]).expanduser().resolve() == folder.resolve()
    except OSError:
        return False
