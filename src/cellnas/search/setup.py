"""Building the supernet and the loaders of a search from its config."""

from __future__ import annotations

import torch

from cellnas.search.config import SearchConfig

__all__ = ["build_model", "SearchLoaders"]


def build_model(cfg: SearchConfig, dataset):
    """The search network for ``dataset``; weights and α are drawn from ``cfg.seed`` alone.

    ``torch.nn`` initialises conv/linear weights from the global RNG, so the construction runs
    inside ``fork_rng`` with the seed set: same seed, same network, and no global state touched.
    """
    from cellnas.supernet import SearchNetwork, SearchSpace

    space = SearchSpace(ops=tuple(cfg.ops), n_nodes=cfg.nodes, k=cfg.k)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = SearchNetwork(
            C=cfg.channels, num_classes=dataset.num_classes, layers=cfg.layers, space=space,
            in_channels=dataset.in_channels, all_normal=cfg.all_normal, seed=cfg.seed,
            partial_channels=cfg.partial_channels, edge_norm=cfg.edge_norm,
        )  # fmt: skip
    if cfg.record_wiring or cfg.remove_edges or cfg.fix_edges:
        from cellnas.search.wiring import ControlledSupernet

        return ControlledSupernet(net, remove_edges=cfg.remove_edges, fix_edges=cfg.fix_edges)
    return net


class SearchLoaders:
    """The weight-training stream, the architecture stream, and an un-augmented pass over the search split."""

    def __init__(self, cfg: SearchConfig, dataset, device: torch.device) -> None:
        from cellnas.data import DeviceLoader, make_loaders, search_split

        self.train, self.valid = make_loaders(
            dataset, batch_size=cfg.batch_size, seed=cfg.seed, device=device, split="search",
            train_portion=cfg.train_portion,
        )  # fmt: skip
        _, valid_idx = search_split(dataset.n_train, cfg.train_portion)
        self.evaluation = DeviceLoader(
            dataset.train_x[valid_idx], dataset.train_y[valid_idx], max(cfg.batch_size, 256),
            mean=dataset.mean, std=dataset.std, augment=None, shuffle=False, device=device,
        )  # fmt: skip
