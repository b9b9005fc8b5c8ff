"""``cellnas train``: retrain a genotype from scratch with a standard protocol (SPEC 2.2, 2.3, 5.6, 6).

Every :class:`~cellnas.train.TrainConfig` value has a flag; flags that are not given leave the value to
``--config FILE`` (a JSON object of config keys, e.g. a run's ``config.json``), then to the preset, then to
the defaults. A config file that names its preset (every run's ``config.json`` has a ``preset`` key) is complete
in itself and refuses another ``--preset``; a file without the key applies over the preset given. The summary is printed
last, with the run directory on the very last line.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cellnas.errors import CellnasError

log = logging.getLogger("cellnas")

__all__ = ["register", "run", "CONFIG_FLAGS", "set_threads"]

_S = argparse.SUPPRESS

#: config key -> (flags, argparse keyword arguments); defaults are SUPPRESSed so that only given flags override.
CONFIG_FLAGS: dict[str, tuple[tuple[str, ...], dict]] = {
    "dataset": (("--dataset",), dict(help="digits, cifar10, cifar100 or imagefolder:PATH (also picks the preset "
                                         "when --preset is not given)")),
    "data_dir": (("--data-dir",), dict(metavar="DIR", help="where the dataset files are (default: ./data in the "
                                                           "current directory; config.json records the absolute "
                                                           "path; digits needs no files)")),
    "download": (("--download",), dict(action="store_true", help="download a missing CIFAR archive")),
    "image_size": (("--image-size",), dict(type=int, metavar="N", help="resize images to N x N when reading them")),
    "batch_size": (("--batch-size",), dict(type=int, metavar="N", help="training batch size")),
    "eval_batch_size": (("--eval-batch-size",), dict(type=int, metavar="N", help="test batch size")),
    "cutout": (("--cutout",), dict(type=int, metavar="L", help="cutout square side, 0 = off (DARTS: 16)")),
    "crop_padding": (("--crop-padding",), dict(type=int, metavar="P", help="random-crop padding (default: the "
                                                                            "dataset's, 4 for CIFAR)")),
    "flip": (("--flip",), dict(action=argparse.BooleanOptionalAction, help="random horizontal flips "
                                                                          "(default: the dataset's)")),
    "network": (("--network",), dict(choices=["cifar", "imagenet"], help="NetworkCIFAR or NetworkImageNet")),
    "channels": (("--channels", "-C"), dict(type=int, metavar="C", help="initial channels C")),
    "layers": (("--layers", "-L"), dict(type=int, metavar="N", help="number of cells")),
    "auxiliary": (("--auxiliary",), dict(action=argparse.BooleanOptionalAction, help="auxiliary head")),
    "auxiliary_weight": (("--auxiliary-weight",), dict(type=float, metavar="W", help="weight of the auxiliary loss")),
    "drop_path": (("--drop-path",), dict(type=float, metavar="P", help="final drop-path probability (ramped "
                                                                        "linearly from 0)")),
    "epochs": (("--epochs",), dict(type=int, metavar="N", help="epochs (with --resume: extend the run to N)")),
    "lr": (("--lr",), dict(type=float, help="initial SGD learning rate")),
    "lr_schedule": (("--lr-schedule",), dict(choices=["cosine", "step"], help="cosine to --lr-min, or step decay "
                                                                                "by --lr-gamma")),
    "lr_min": (("--lr-min",), dict(type=float, help="final learning rate of the cosine schedule")),
    "lr_gamma": (("--lr-gamma",), dict(type=float, help="step schedule: decay factor")),
    "lr_step": (("--lr-step",), dict(type=int, metavar="N", help="step schedule: epochs between decays")),
    "momentum": (("--momentum",), dict(type=float, help="SGD momentum")),
    "weight_decay": (("--weight-decay",), dict(type=float, help="SGD weight decay")),
    "grad_clip": (("--grad-clip",), dict(type=float, help="global gradient-norm clipping")),
    "label_smoothing": (("--label-smoothing",), dict(type=float, help="label smoothing of the training loss")),
    "mixup": (("--mixup",), dict(type=float, metavar="ALPHA", help="mixup Beta(alpha, alpha), 0 = off")),
    "seed": (("--seed",), dict(type=int, help="seed of weights, batches, drop-path and mixup")),
    "device": (("--device",), dict(help="auto, cpu or cuda[:N]")),
    "amp": (("--amp",), dict(choices=["auto", "bf16", "off"], help="bf16 autocast (auto: on CUDA only)")),
    "channels_last": (("--channels-last",), dict(choices=["auto", "on", "off"], help="NHWC memory format "
                                                                                      "(auto: on CUDA only)")),
    "compile": (("--compile",), dict(action=argparse.BooleanOptionalAction, help="torch.compile the network")),
    "steps_per_epoch": (("--steps-per-epoch",), dict(type=int, metavar="N", help="cap the steps of an epoch "
                                                                                  "(quick tries and tests)")),
    "checkpoint_every": (("--checkpoint-every",), dict(type=int, metavar="N", help="also checkpoint every N steps "
                                                                                    "within an epoch (0 = off)")),
    "progress": (("--no-progress",), dict(action="store_false", help="no progress bar")),
    "plots": (("--no-plots",), dict(action="store_false", help="do not draw curves.png at the end")),
}  # fmt: skip


def register(sub, formatter) -> None:
    from cellnas.train.config import DATASET_PRESETS, PRESETS

    p = sub.add_parser(
        "train",
        help="retrain a genotype from scratch (DARTS protocols) and test it each epoch",
        description=(
            "Train the evaluation network of GENOTYPE from scratch and test it on the held-out test set after\n"
            "every epoch. The run directory gets config.json, meta.json, metrics.jsonl, checkpoint.pt,\n"
            "final.pt (weights + everything needed to rebuild them; see `cellnas evaluate`), summary.json\n"
            "and curves.png. In summary.json (and --json) best_epoch counts from 0, as the epoch of\n"
            "metrics.jsonl does; the printed summary counts epochs from 1, as the progress lines do.\n"
            "GENOTYPE may be a `cellnas search` or `cellnas train` run directory: without --dataset, --preset or\n"
            "--config the run then trains on that run's dataset (and --data-dir), with that dataset's preset.\n\n"
            f"presets: {', '.join(PRESETS)}\n"
            "  darts-cifar10   SPEC 2.2: 20 cells, C=36, batch 96, 600 epochs, lr 0.025 cosine to 0, cutout 16,\n"
            "                  drop-path 0.2, auxiliary 0.4 (also darts-cifar100)\n"
            "  darts-imagenet  SPEC 2.3 on --dataset imagefolder:PATH at 224x224 (crop + flip only: not exact)\n"
            "  nb301-proxy     NAS-Bench-301 pipeline: 8 cells, C=32, 100 epochs, mixup 0.2\n"
            "  digits          8 cells, C=16 on the bundled 8x8 digits (a few CPU minutes)\n"
            "Without --preset the dataset picks one: "
            + ", ".join(f"{d} -> {p}" for d, p in DATASET_PRESETS.items()) + ".\n"
            "Values resolve as: defaults < preset < --config FILE < flags. A config file that names a preset\n"
            "(every run's config.json does) is complete in itself and refuses another --preset.\n"
            "On a CPU shared with other work, --threads 1 is often several times faster than torch's default.\n\n"
            "examples:\n  cellnas train DARTS_V2 --dataset digits\n"
            "  cellnas train DARTS_V2 --preset darts-cifar10 --data-dir data --seeds 0,1,2\n"
            "  cellnas train --resume runs/train-20250101-120000"
        ),
        formatter_class=formatter,
    )
    p.add_argument("genotype", metavar="GENOTYPE", nargs="?", default=None,
                   help="zoo name, genotype file, run directory or DARTS Genotype(...) text (optional with --resume)")
    p.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--config", metavar="FILE", default=None, help="JSON file of config values (e.g. a config.json)")
    p.add_argument("--out", "-o", metavar="DIR", default=None, help="run directory (must not exist or be empty; "
                                                                    "default runs/train-<time>)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the run in DIR exactly where it stopped")
    p.add_argument("--seeds", metavar="S,S,...", default=None,
                   help="one run per seed in DIR/seed-S, then mean +- std of the test error (not with --seed)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (best_epoch counts from 0)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of torch (default: torch's choice; 1 is often fastest on a shared machine)")
    group = p.add_argument_group("config values (the preset's when not given)")
    for key, (flags, kwargs) in CONFIG_FLAGS.items():
        group.add_argument(*flags, dest=key, default=_S, **kwargs)
    p.set_defaults(func=run)


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise CellnasError(f"--seeds takes comma-separated integers such as 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise CellnasError(f"--seeds needs distinct integers >= 0 such as 0,1,2; got {text!r}")
    return seeds


#: Keys every saved training config.json has and a search config lacks: a file with all of them is a training config.
_TRAIN_KEYS = ("network", "auxiliary", "drop_path")


def _read_config_file(path: str, command: str = "train") -> dict:
    """The JSON object of ``--config path`` for ``cellnas <command>`` (``train`` or ``search``); a saved config of the
    other command is refused in one line that says what to give instead."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CellnasError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CellnasError(f"--config {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise CellnasError(f"--config {path} must hold a JSON object of config keys")
    from cellnas.runs import is_search_config, search_run

    if command == "search":
        if not is_search_config(doc) and all(k in doc for k in _TRAIN_KEYS):
            raise CellnasError(f"--config {path} is a `cellnas train` config, not a search one; give a search config "
                               "(a `cellnas search` run's config.json, or a file of search options)")  # fmt: skip
        return doc
    if is_search_config(doc):  # its search keys are no training keys: one line instead of a list of them
        folder = Path(path).parent
        how = (f"train the cell that search found with `cellnas train {folder}` (it trains on the search's dataset)"
               if search_run(folder) is not None else "give a training config (a `cellnas train` run's config.json), "
               "or train the cell of a search by giving its run directory as GENOTYPE")  # fmt: skip
        raise CellnasError(f"--config {path} is a `cellnas search` config, not a training one; {how}")
    return doc


def set_threads(n: int | None, resume: str | None = None) -> None:
    """Process-wide, so set here by the command that owns the process, never by the library.

    With ``resume`` (a run directory) and no ``n``, the count the run's first session used (meta.json), so that a
    resumed run sums as the uninterrupted one would (a different count rounds differently)."""
    if n is not None and n < 1:
        raise CellnasError(f"--threads must be >= 1, got {n}")
    import torch

    if n is None and resume is not None:
        from cellnas.runs import resume_threads

        n = resume_threads(resume, None)
        if n is not None and n != torch.get_num_threads():
            log.info("resuming with %d torch thread%s, as the run's first session (--threads to change it)",
                     n, "" if n == 1 else "s")  # fmt: skip
    if n is None:
        return
    torch.set_num_threads(n)


def _overrides(args) -> dict:
    return {key: getattr(args, key) for key in CONFIG_FLAGS if hasattr(args, key)}


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f} %"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _params(n: int) -> str:
    return f"{n:,} ({n / 1e6:.2f}M) auxiliary head excluded"


def run(args) -> int:
    from cellnas.train import train, train_seeds

    set_threads(args.threads, args.resume)
    flags = _overrides(args)
    if args.resume is not None:
        if args.config or args.preset:
            raise CellnasError("--resume takes the run's own config; drop --config/--preset")
        if args.seeds is not None:
            raise CellnasError("--resume of a --seeds run needs only the parent directory; drop --seeds")
        if args.out is not None:
            raise CellnasError("--resume continues in the run's own directory; drop --out")
        if (Path(args.resume) / "seeds.json").is_file():
            return _report_seeds(train_seeds(args.genotype, [], resume=args.resume, **flags), args.json)
        return _report(train(args.genotype, resume=args.resume, **flags), args.json)
    if args.genotype is None:
        raise CellnasError("missing GENOTYPE (a zoo name such as DARTS_V2, a genotype file or a run directory)")
    if args.seeds is not None and "seed" in flags:
        raise CellnasError(f"--seed {flags['seed']} cannot be combined with --seeds: each run takes its seed from "
                           "--seeds; drop --seed (or give --seeds the seeds you want)")  # fmt: skip
    values = _read_config_file(args.config) if args.config else {}
    if args.preset is not None and "preset" in values and values["preset"] != args.preset:
        named = values["preset"]
        raise CellnasError(
            f"--config {args.config} names its own preset ({named if named is not None else 'none'}; every run's "
            f"config.json does) and holds the values it resolved to, so --preset {args.preset} would change nothing "
            f"it sets: drop --preset, or remove \"preset\" from the file to apply its values over --preset "
            f"{args.preset}"
        )
    preset = args.preset or values.pop("preset", None)
    values.pop("preset", None)
    values.update(flags)
    from cellnas.train import resolve_config
    from cellnas.train.source import with_run_dataset

    chosen = bool(args.config or args.preset or "dataset" in flags)
    values = with_run_dataset(args.genotype, values, chosen=chosen, warn=False)  # train() warns
    cfg = resolve_config(preset, values)
    if args.seeds is not None:
        return _report_seeds(train_seeds(args.genotype, _parse_seeds(args.seeds), cfg, out=args.out), args.json)
    return _report(train(args.genotype, cfg, out=args.out), args.json)


def _report(result, as_json: bool) -> int:
    s = result.summary()
    if as_json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"genotype     hash {s['genotype_hash']}, {result.config.dataset}, seed {s['seed']}")
    print(f"params       {_params(s['params'])}")
    print(f"test error   last {_pct(s['last_test_error'])} (epoch {s['epochs']}), "
          f"best {_pct(s['best_test_error'])} (epoch {s['best_epoch'] + 1})")  # fmt: skip
    print(f"time         {_duration(s['train_seconds'] or 0.0)} training")
    print(f"run          {s['run_dir']}")
    return 0


def _report_seeds(result, as_json: bool) -> int:
    s = result.summary
    if as_json:
        print(json.dumps(s, indent=2))
        return 0
    for r in s["runs"]:
        print(f"seed {r['seed']:<7} last {_pct(r['last_test_error'])}, best {_pct(r['best_test_error'])}  "
              f"{r['run_dir']}")  # fmt: skip
    last, best = s["test_error"], s["best_test_error"]
    print(f"params       {_params(s['params'])}")
    if last["n"] == 1:  # no sample standard deviation of one value
        print(f"test error   {100 * last['mean']:.2f} % (last epoch, one seed: no std); best epoch "
              f"{100 * best['mean']:.2f} %")  # fmt: skip
    else:
        print(f"test error   {100 * last['mean']:.2f} +- {100 * last['std']:.2f} % (last epoch, mean +- std over "
              f"{last['n']} seeds); best epoch {100 * best['mean']:.2f} +- {100 * best['std']:.2f} %")  # fmt: skip
    print(f"time         {_duration(sum(r['train_seconds'] or 0.0 for r in s['runs']))} training")
    print(f"run          {s['run_dir']}")
    return 0
