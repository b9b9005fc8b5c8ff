"""``cellnas evaluate``: test a trained ``final.pt`` on a dataset's test set (SPEC 2.2).

``final.pt`` carries the genotype and the network's constructor arguments, so nothing else is needed. The
parent directory of a ``cellnas train --seeds`` run tests every seed and adds the mean ± std over seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

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
        return _report_seeds(evaluate_seeds(path, args.dataset, args.data_dir, **options), args.json)
    report = evaluate(args.final, args.dataset, args.data_dir, **options)
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
    print(f"test loss    {loss['mean']:.4f} +- {loss['std']:.4f}")
    print(f"test acc     {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} %")
    print(f"test error   {100 * err['mean']:.2f} +- {100 * err['std']:.2f} % "
          f"(mean +- sample std over {err['n']} seeds)")  # fmt: skip
    return 0
