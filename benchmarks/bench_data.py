"""Throughput of the device-resident loader vs torch.utils.data.DataLoader; prints JSON.

    python benchmarks/bench_data.py [--dataset synthetic-cifar] [--batch-size 256] [--n-batches 50]
                                    [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import logging

from cellnas.bench.data import bench_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic-cifar")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-batches", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads during the measurement")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = bench_data(args.dataset, args.batch_size, args.n_batches, args.device, data_dir=args.data_dir,
                        threads=args.threads)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
