"""DARTS search: bilevel optimisation with first- and second-order architecture gradients."""

from cellnas.search.config import PRESETS, SearchConfig, resolve_config
from cellnas.search.loop import SearchResult, search

__all__ = ["search", "SearchResult", "SearchConfig", "PRESETS", "resolve_config"]

from cellnas._callable import make_callable  # noqa: E402

make_callable(__name__, "search")  # cellnas.search(...) runs a search
