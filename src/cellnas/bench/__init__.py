"""Throughput benchmarks (``cellnas bench ...``); each module defines one ``bench_*`` function returning a dict.

* :mod:`cellnas.bench.data`: :func:`~cellnas.bench.data.bench_data`, the device-resident loader against a
  standard ``torch.utils.data.DataLoader``.
"""
