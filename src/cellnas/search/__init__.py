"""DARTS search: bilevel optimisation with first- and second-order architecture gradients."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on first use (cellnas._callable.lazy_exports): the config alone needs no torch
    from cellnas.search.config import PRESETS, SearchConfig, resolve_config
    from cellnas.search.loop import SearchResult, search

__all__ = ["search", "SearchResult", "SearchConfig", "PRESETS", "resolve_config"]

from cellnas._callable import lazy_exports, make_callable  # noqa: E402

lazy_exports(__name__, {"PRESETS": "config", "SearchConfig": "config", "resolve_config": "config",
                        "SearchResult": "loop", "search": "loop"})  # fmt: skip
make_callable(__name__, "search")  # cellnas.search(...) runs a search
