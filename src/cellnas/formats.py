"""Reading and writing genotypes in the formats people already have.

* ``json``: native, versioned (``{"format": "cellnas.genotype", "version": 1, ...}``);
* ``darts``: the ``Genotype(normal=[...], normal_concat=..., ...)`` text of quark0/darts
  (parsed with :mod:`ast`, never ``eval``: a string holding code is rejected, not run);
* ``nnabla``: ``{"arch_normal": {"2": [[op_id, input], ...]}, "arch_reduction": ...}`` (SPEC 7);
* ``nb301``: the NAS-Bench-301 configuration dict (SPEC 6).

:func:`load_genotype` resolves what the CLI calls GENOTYPE: a zoo name, a file in
any of these formats (auto-detected), a run directory holding ``genotype.json``,
or the DARTS text itself; from Python also a :class:`~cellnas.genotype.Genotype`, its
``to_dict()`` (or any of these JSON documents as a dict) and a search result.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellnas.errors import FormatError, GenotypeError
from cellnas.genotype import PRIMITIVES, Cell, Genotype, as_int

__all__ = [
    "FORMATS",
    "NNABLA_OPS",
    "to_json",
    "from_json",
    "to_darts_text",
    "from_darts_text",
    "to_nnabla",
    "from_nnabla",
    "to_nb301",
    "from_nb301",
    "dumps",
    "loads",
    "from_doc",
    "load_genotype",
    "save_genotype",
]

log = logging.getLogger(__name__)

FORMATS = ("json", "darts", "nnabla", "nb301")
NATIVE_FORMAT = "cellnas.genotype"
NATIVE_VERSION = 1

# -- native JSON ------------------------------------------------------------------------------


def to_json(g: Genotype, unsearched: tuple[str, ...] = ()) -> dict:
    """The native versioned JSON document of ``g``.

    ``unsearched`` names cells the search did not choose: ``("reduce",)`` after an all-normal search (SPEC 4: Xie
    et al.'s supernet has no reduction cells), ``("normal",)`` with fewer than 3 layers (every cell a reduction
    cell); such a cell is derived from untrained α, and readers warn.
    """
    doc = {"format": NATIVE_FORMAT, "version": NATIVE_VERSION, **g.to_dict(), "hash": g.content_hash()}
    if unsearched:
        doc["unsearched"] = list(unsearched)
    return doc


def from_json(doc: dict, source: str | None = None) -> Genotype:
    """The genotype of a native JSON document.

    A ``hash`` that differs from the content's :meth:`~cellnas.genotype.Genotype.content_hash` (a file edited
    by hand) is logged as a warning naming ``source`` (the file) and both hashes; the content is used.
    """
    if doc.get("format") != NATIVE_FORMAT:
        raise FormatError(f"not a cellnas genotype document (format={doc.get('format')!r})")
    if doc.get("version") != NATIVE_VERSION:
        raise FormatError(
            f"cellnas genotype format version {doc.get('version')!r} is not supported (this cellnas reads "
            f"version {NATIVE_VERSION}); upgrade cellnas"
        )
    g = Genotype.from_dict(doc)
    unsearched = doc.get("unsearched") or []
    if unsearched:
        log.warning(
            "%s: its %s cell was not searched (the supernet had no such cell: --all-normal, or fewer than 3 "
            "layers), so it comes from untrained α; a network built from it uses that cell as it is",
            f"genotype file {source}" if source else "genotype JSON", " and ".join(map(str, unsearched)),
        )  # fmt: skip
    stated = doc.get("hash")
    if stated is not None and stated != g.content_hash():
        where = f"genotype file {source}" if source else "genotype JSON"
        log.warning(
            "%s: its 'hash' field is %r but its content hashes to %r (edited by hand?); the content is used",
            where, stated, g.content_hash(),
        )  # fmt: skip
    return g


# -- DARTS namedtuple text ----------------------------------------------------------------------

_DARTS_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def to_darts_text(g: Genotype) -> str:
    """``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])`` as DARTS prints it."""
    parts = []
    for name in ("normal", "reduce"):
        cell = g.cell(name)
        parts.append(f"{name}={cell.pairs!r}")
        parts.append(f"{name}_concat={list(cell.concat)!r}")
    return "Genotype(" + ", ".join(parts) + ")"


def _literal(node: ast.AST, what: str):
    """Evaluate a literal or ``range(a, b)``; anything else is refused (it may be code)."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords:
            args = [_literal(a, what) for a in node.args]
            if 1 <= len(args) <= 3 and all(isinstance(a, int) for a in args):
                return list(range(*args))
        raise FormatError(f"DARTS text: {what} must be a literal list or range(a, b), not code")
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise FormatError(f"DARTS text: {what} must be a literal, not code") from None


def from_darts_text(text: str, k: int | None = None) -> Genotype:
    """Parse DARTS ``Genotype(...)`` text safely (positional or keyword fields; ``range`` concat).

    The text holds one ``Genotype(...)`` expression, optionally assigned (``DARTS_V2 = Genotype(...)``). A line
    pasted from a search log (``12/01 10:00:00 AM genotype = Genotype(...)``) is read from its ``Genotype(`` on.

    The text does not say how many inputs ``k`` each node has; ``k=None`` reads it off the pair counts and concat
    lists (:func:`~cellnas.genotype.infer_k`), so the text of every genotype a search derives (``--k 1`` or 2, any
    node count) reads back as it was. Give ``k`` for a cell whose last node is not in its concat (a dead node).
    """
    one = "DARTS text must be a single [NAME =] Genotype(normal=..., normal_concat=..., reduce=..., ...) expression"
    try:
        body = ast.parse(text.strip(), mode="exec").body
    except SyntaxError as exc:
        n_calls = text.count("Genotype(")
        if n_calls > 1:
            raise FormatError(f"DARTS text holds {n_calls} Genotype(...) expressions (a whole log?); give one, "
                              "e.g. the last line that prints the genotype") from None  # fmt: skip
        if n_calls == 1 and text[: text.index("Genotype(")].strip():  # e.g. a log line's time stamp
            return from_darts_text(text[text.index("Genotype(") :], k=k)
        raise FormatError(f"DARTS text is not valid: {exc.msg} (line {exc.lineno}); expected one "
                          "[NAME =] Genotype(...) expression") from None  # fmt: skip
    if len(body) != 1:
        raise FormatError(f"{one}; found {len(body)} statements")
    stmt = body[0]
    if isinstance(stmt, ast.Expr) or (
        isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
    ):
        call = stmt.value
    else:
        raise FormatError(one)
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name | ast.Attribute)):
        raise FormatError(one)
    name = call.func.id if isinstance(call.func, ast.Name) else call.func.attr
    if name != "Genotype":
        raise FormatError(f"DARTS text must call Genotype(...), not {name}(...)")
    if len(call.args) > 4:
        raise FormatError("DARTS text: Genotype takes 4 fields (normal, normal_concat, reduce, reduce_concat)")
    fields = {f: _literal(a, f) for f, a in zip(_DARTS_FIELDS, call.args)}
    for kw in call.keywords:
        if kw.arg not in _DARTS_FIELDS:
            raise FormatError(f"DARTS text: unknown field {kw.arg!r}; valid fields: {', '.join(_DARTS_FIELDS)}")
        if kw.arg in fields:
            raise FormatError(f"DARTS text: field {kw.arg!r} is given more than once")
        fields[kw.arg] = _literal(kw.value, kw.arg)
    missing = [f for f in _DARTS_FIELDS if f not in fields]
    if missing:
        raise FormatError(f"DARTS text: missing field(s) {', '.join(missing)}")
    return Genotype.from_darts(**fields, k=k)


# -- NNabla JSON (SPEC 7) ---------------------------------------------------------------------------

#: NNabla op ids (sony/nnabla-examples DARTS): id -> our op name.
NNABLA_OPS: dict[int, str] = {
    0: "dil_conv_3x3",
    1: "dil_conv_5x5",
    2: "sep_conv_3x3",
    3: "sep_conv_5x5",
    4: "max_pool_3x3",
    5: "avg_pool_3x3",
    6: "skip_connect",  # NNabla calls it "identity"
    7: "none",  # NNabla calls it "zero"
}
_NNABLA_IDS = {v: k for k, v in NNABLA_OPS.items()}
_NNABLA_KEYS = {"normal": "arch_normal", "reduce": "arch_reduction"}


def to_nnabla(g: Genotype) -> dict:
    """NNabla's architecture JSON. The output node is implicit, so concat must be all intermediate nodes."""
    doc = {}
    for cell_type, key in _NNABLA_KEYS.items():
        cell = g.cell(cell_type)
        if list(cell.concat) != list(range(2, cell.n_nodes + 2)):
            raise FormatError(
                f"NNabla format cannot encode {cell_type} concat {list(cell.concat)}: it always concatenates "
                f"all intermediate nodes {list(range(2, cell.n_nodes + 2))}"
            )
        nodes = {}
        for j, node in enumerate(cell.nodes):
            pairs = []
            for op, src in node:
                if op not in _NNABLA_IDS:
                    raise FormatError(
                        f"NNabla format has no id for op {op!r} ({cell_type} cell, node {j + 2}); "
                        f"it knows {', '.join(_NNABLA_IDS)}"
                    )
                pairs.append([_NNABLA_IDS[op], src])
            nodes[str(j + 2)] = pairs
        doc[key] = nodes
    return doc


def from_nnabla(doc: dict) -> Genotype:
    cells = {}
    for cell_type, key in _NNABLA_KEYS.items():
        if key not in doc:
            raise FormatError(f"NNabla JSON lacks {key!r} (keys are 'arch_normal' and 'arch_reduction')")
        if not isinstance(doc[key], dict):
            raise FormatError(
                f"NNabla JSON {key} must be an object mapping node ids ('2', '3', ...) to [op_id, input] pairs"
            )
        try:
            node_ids = sorted(doc[key], key=int)
        except (TypeError, ValueError):
            raise FormatError(f"NNabla JSON {key}: node keys must be integer strings like '2'") from None
        if node_ids != [str(i) for i in range(2, len(node_ids) + 2)]:
            raise FormatError(f"NNabla JSON {key}: node keys must be consecutive from '2', got {node_ids}")
        nodes = []
        for nid in node_ids:
            where = f"NNabla JSON {key} node {nid}"
            items = doc[key][nid]
            if not isinstance(items, list | tuple):
                raise FormatError(f"{where}: expected a list of [op_id, input] pairs, got {items!r}")
            pairs = []
            for item in items:
                if not isinstance(item, list | tuple) or len(item) != 2:
                    raise FormatError(f"{where}: expected an [op_id, input] pair, got {item!r}")
                op_id, src = as_int(item[0]), as_int(item[1])
                if op_id is None:
                    raise FormatError(f"{where}: op id must be an integer 0-7, got {item[0]!r} in pair {item!r}")
                if op_id not in NNABLA_OPS:
                    raise FormatError(
                        f"{where}: unknown op id {op_id}; valid ids 0-7 "
                        f"({', '.join(f'{i}={n}' for i, n in NNABLA_OPS.items())})"
                    )
                if src is None:
                    raise FormatError(f"{where}: input index must be an integer, got {item[1]!r} in pair {item!r}")
                pairs.append((NNABLA_OPS[op_id], src))
            nodes.append(tuple(pairs))
        cells[cell_type] = Cell(nodes=tuple(nodes), concat=tuple(range(2, len(nodes) + 2)))
    return Genotype(**cells)


# -- NAS-Bench-301 configuration (SPEC 6) ------------------------------------------------------------

_NB301_PREFIX = "NetworkSelectorDatasetInfo:darts:"
#: The cell keys NB301 defines: edge_<cell>_0 .. 13 (node 2: 0-1, node 3: 2-4, node 4: 5-8, node 5: 9-13)
#: and inputs_node_<cell>_3 .. 5 (node 2 always reads nodes 0 and 1).
_NB301_CELL_KEY = re.compile(r"(edge|inputs_node)_(normal|reduce)_.*")
#: NB301's op set: the 7 non-``none`` DARTS primitives (SPEC 6).
_NB301_OPS = PRIMITIVES[1:]


def _nb301_unknown_op(dst: int, op: str) -> str:
    """Why op ``op`` on an edge into node ``dst`` cannot be in an NB301 config (writing and reading say the same)."""
    return f"node {dst} uses op {op!r}; NB301 knows {', '.join(_NB301_OPS)} (no 'none')"


def to_nb301(g: Genotype) -> dict:
    """The NB301 configuration dict. Refuses what NB301 cannot encode (SPEC 6)."""
    cfg: dict[str, str] = {}
    for cell_type in ("normal", "reduce"):
        cell = g.cell(cell_type)
        where = f"NAS-Bench-301 cannot encode the {cell_type} cell"
        if cell.n_nodes != 4 or len(cell.nodes[0]) != 2:
            raise FormatError(f"{where}: it needs 4 intermediate nodes with 2 inputs each")
        if list(cell.concat) != [2, 3, 4, 5]:
            raise FormatError(f"{where}: concat must be [2, 3, 4, 5], got {list(cell.concat)}")
        offset = 0
        for j, node in enumerate(cell.nodes):
            dst = j + 2
            srcs = [src for _, src in node]
            if srcs[0] == srcs[1]:
                raise FormatError(f"{where}: node {dst} reads node {srcs[0]} twice (duplicate inputs)")
            for op, src in node:
                if op not in _NB301_OPS:
                    raise FormatError(f"{where}: {_nb301_unknown_op(dst, op)}")
                cfg[f"{_NB301_PREFIX}edge_{cell_type}_{offset + src}"] = op
            if dst > 2:
                cfg[f"{_NB301_PREFIX}inputs_node_{cell_type}_{dst}"] = "_".join(str(s) for s in sorted(srcs))
            offset += dst
    return cfg


def from_nb301(cfg: dict) -> Genotype:
    """Decode an NB301 config.

    NB301 itself keeps no order between the two inputs of a node; the order of the keys in
    the dict is used (:func:`to_nb301` writes them strongest edge first, and JSON keeps key
    order), so a cellnas round trip is exact; other configs come back in key order too. Ops outside NB301's
    set (``none`` included) are refused, as :func:`to_nb301` refuses them.
    """
    key_rank = {k: r for r, k in enumerate(cfg)}
    used: set[str] = set()
    cells = {}
    for cell_type in ("normal", "reduce"):
        nodes = []
        offset = 0
        for dst in range(2, 6):
            if dst == 2:
                srcs = [0, 1]
            else:
                key = f"{_NB301_PREFIX}inputs_node_{cell_type}_{dst}"
                if key not in cfg:
                    raise FormatError(f"NB301 config lacks {key!r}")
                value = cfg[key]
                if not isinstance(value, str) or not re.fullmatch(r"[0-9]+_[0-9]+", value):
                    raise FormatError(f"NB301 config {key} = {value!r} is not of the form 'i_j'")
                srcs = [int(s) for s in value.split("_")]
                if srcs[0] == srcs[1]:
                    raise FormatError(f"NB301 config {key} = {value!r}: a node's two inputs must differ")
                if max(srcs) >= dst:
                    raise FormatError(f"NB301 config {key} = {value!r}: node {dst} reads only nodes 0 .. {dst - 1}")
                used.add(key)
            pairs = []
            for src in srcs:
                key = f"{_NB301_PREFIX}edge_{cell_type}_{offset + src}"
                if key not in cfg:
                    raise FormatError(f"NB301 config lacks {key!r} (node {dst} reads node {src})")
                if not isinstance(cfg[key], str):
                    raise FormatError(f"NB301 config {key} = {cfg[key]!r}: the op must be a name (a string)")
                if cfg[key] not in _NB301_OPS:
                    raise FormatError(f"NB301 config {key} = {cfg[key]!r}: {_nb301_unknown_op(dst, cfg[key])}")
                used.add(key)
                pairs.append((key_rank[key], (cfg[key], src)))
            nodes.append(tuple(p for _, p in sorted(pairs)))
            offset += dst
        cells[cell_type] = Cell(nodes=tuple(nodes), concat=(2, 3, 4, 5))
    for key in cfg:
        name = key[len(_NB301_PREFIX) :] if isinstance(key, str) and key.startswith(_NB301_PREFIX) else ""
        if key not in used and _NB301_CELL_KEY.fullmatch(name):
            raise FormatError(_nb301_unused_key(key, name))
    return Genotype(**cells)


def _nb301_unused_key(key: str, name: str) -> str:
    """Why ``key`` (a cell key that no node reads) is refused."""
    kind, cell_type, rest = re.fullmatch(r"(edge|inputs_node)_(normal|reduce)_(.*)", name).groups()
    if kind == "inputs_node":
        return (
            f"NB301 config key {key!r} does not exist in NB301: valid are inputs_node_{cell_type}_3 .. "
            f"inputs_node_{cell_type}_5"
        )
    if rest not in {str(e) for e in range(14)}:
        return f"NB301 config key {key!r} does not exist in NB301: valid are edge_{cell_type}_0 .. edge_{cell_type}_13"
    edge, dst = int(rest), 2
    while edge >= dst:
        edge, dst = edge - dst, dst + 1
    return (
        f"NB301 config sets {key!r} (node {dst} reads node {edge}), but "
        f"inputs_node_{cell_type}_{dst} does not list node {edge}"
    )


# -- text in/out, detection ----------------------------------------------------------------------------


def dumps(g: Genotype, fmt: str = "json") -> str:
    """Serialise ``g`` as text in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return json.dumps(to_json(g), indent=2)
    if fmt == "darts":
        return to_darts_text(g)
    if fmt == "nnabla":
        return json.dumps(to_nnabla(g))
    if fmt == "nb301":
        return json.dumps(to_nb301(g), indent=2)
    raise FormatError(f"unknown genotype format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def from_doc(doc: Mapping, source: str | None = None) -> Genotype:
    """The genotype of a JSON document already parsed, format auto-detected: cellnas (``"format"``), NNabla
    (``"arch_normal"``), NAS-Bench-301 (``NetworkSelectorDatasetInfo:darts:...`` keys), or a plain
    :meth:`~cellnas.genotype.Genotype.to_dict` (or DARTS-field) dict."""
    if not isinstance(doc, Mapping):
        raise FormatError(f"genotype JSON must be an object, got {type(doc).__name__}")
    if "format" in doc:
        return from_json(doc, source)
    if "arch_normal" in doc or "arch_reduction" in doc:
        return from_nnabla(doc)
    if any(str(k).startswith(_NB301_PREFIX) for k in doc):
        return from_nb301(doc)
    if "normal" in doc and "reduce" in doc:
        return Genotype.from_dict(doc)
    raise FormatError(
        "JSON is not a known genotype format (expected cellnas 'format' key, NNabla 'arch_normal', "
        "NAS-Bench-301 'NetworkSelectorDatasetInfo:darts:' keys, or 'normal' and 'reduce' cells)"
    )


def loads(text: str | bytes, source: str | None = None, k: int | None = None) -> Genotype:
    """Parse genotype text in any supported format (auto-detected); ``source`` names where the text came from
    (a file) in warnings. Bytes are read as UTF-8. ``k``: inputs per node of DARTS text (default: inferred, see
    :func:`from_darts_text`)."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("genotype bytes are not UTF-8 text") from None
    if not isinstance(text, str):
        raise FormatError(
            f"loads() parses genotype text (a str or UTF-8 bytes), got {type(text).__name__}; for a Genotype, a dict, "
            "a file, a run directory or a zoo name use load_genotype()"
        )
    stripped = text.lstrip("\ufeff").strip()  # a UTF-8 byte-order mark is not content
    if not stripped:
        raise FormatError("empty genotype text")
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise FormatError(f"invalid JSON (truncated file?): {exc.msg} at line {exc.lineno}") from None
        return from_doc(doc, source)
    if "Genotype(" in stripped:
        return from_darts_text(stripped, k=k)
    raise FormatError("text is not a genotype in any known format (cellnas JSON, DARTS Genotype(...), NNabla, NB301)")


def load_genotype(spec: Any) -> Genotype:
    """Resolve GENOTYPE: a zoo name, a file (any format), a run directory, or genotype text (DARTS, JSON).

    From Python it also takes a :class:`~cellnas.genotype.Genotype` (returned as it is), a dict (its ``to_dict()``,
    or any JSON document :func:`loads` reads, parsed), an object whose ``.genotype`` is a Genotype (a
    ``SearchResult``), an object with the DARTS namedtuple's fields (``normal``, ``normal_concat``, ``reduce``,
    ``reduce_concat``) and UTF-8 bytes of genotype text. Anything else is a :class:`FormatError` listing these.
    """
    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, Mapping):
        return from_doc(spec)
    if isinstance(spec, bytes | bytearray):
        return loads(spec)
    if not isinstance(spec, str | os.PathLike):
        return _load_object(spec)
    text = str(spec)
    if "Genotype(" in text or text.lstrip().startswith("{"):
        return loads(text)
    path = Path(text)
    if path.is_dir():
        candidate = path / "genotype.json"
        if not candidate.is_file():
            raise FormatError(f"directory {path} holds no genotype.json (is it a finished cellnas run?)")
        from cellnas.runs import search_run

        run = search_run(path)
        if run is not None:  # its genotype.json is rewritten every epoch: say so when the search did not finish
            run.warn_if_unfinished()
        path = candidate
    if path.is_file():
        binary = _binary_kind(path)
        if binary is not None:
            raise FormatError(f"{path} is a binary file ({binary}), not a genotype; give {_GENOTYPE_INPUTS}")
        try:
            content = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise FormatError(f"cannot read genotype file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise FormatError(f"{path} is not UTF-8 text, so not a genotype file; give {_GENOTYPE_INPUTS}") from None
        try:
            return loads(content, source=str(path))
        except (FormatError, GenotypeError) as exc:
            raise FormatError(f"{path}: {exc}") from None
    from cellnas.zoo import ALIASES, ZOO, get_genotype

    if text.lower() in {k.lower() for k in list(ZOO) + list(ALIASES)}:
        return get_genotype(text)
    if os.sep in text or text.endswith((".json", ".txt", ".py")):
        raise FormatError(f"genotype file {text} does not exist")
    raise FormatError(
        f"{text!r} is neither a zoo genotype ({', '.join(ZOO)}), an existing file or run directory, "
        "nor DARTS Genotype(...) text"
    )


def _load_object(spec: Any) -> Genotype:
    """The genotype of a Python object that is neither text nor a path (see :func:`load_genotype`)."""
    if hasattr(spec, "genotype"):
        inner = spec.genotype
        if isinstance(inner, Genotype):
            return inner
        raise FormatError(f"{type(spec).__name__}.genotype is {type(inner).__name__} {inner!r:.80}, not a Genotype")
    if all(hasattr(spec, f) for f in _DARTS_FIELDS):  # a quark0/darts Genotype namedtuple
        return Genotype.from_darts(*(getattr(spec, f) for f in _DARTS_FIELDS))
    raise FormatError(
        f"cannot load a genotype from {type(spec).__name__} {spec!r:.80}; give a Genotype, its to_dict(), a search "
        f"result, DARTS Genotype(...) text, {_GENOTYPE_INPUTS}"
    )


_GENOTYPE_INPUTS = ("a genotype file (cellnas JSON, DARTS text, NNabla JSON, NAS-Bench-301 JSON), a run directory "
                    "or a zoo name")

#: Leading bytes of binary files often given by mistake for a genotype, and what to call them.
_MAGIC = (
    (b"\x89PNG", "a PNG image"), (b"%PDF", "a PDF document"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"PK\x03\x04", "a zip archive: a PyTorch .pt file or another"), (b"\x80", "a Python pickle"),
    (b"\x93NUMPY", "a NumPy .npy array"), (b"\x1f\x8b", "a gzip archive"),
)  # fmt: skip


def _binary_kind(path: Path) -> str | None:
    """What binary file ``path`` is (by its first bytes: a PNG, a zip such as ``final.pt``, ...), or ``None`` for
    text. A NUL byte in the first 4 KiB also marks a binary file; text genotypes have none."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None  # reading it as text says what is wrong
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "it holds NUL bytes" if b"\x00" in head else None


def save_genotype(g: Genotype, path: str | os.PathLike, fmt: str = "json", unsearched: tuple[str, ...] = ()) -> Path:
    """Write ``g`` to ``path`` in ``fmt`` atomically (temporary file, then rename); return the path.

    Missing parent folders of ``path`` are created. A file that cannot be written (a read-only folder, a full disk)
    raises :class:`~cellnas.runs.WriteFailed` (a :class:`~cellnas.errors.RunError`) and leaves any earlier file there
    intact. ``unsearched`` (json only): the cells the search did not choose, see :func:`to_json`."""
    from cellnas.runs import atomic_write_text

    if unsearched:
        if fmt != "json":
            raise FormatError(f"only the json format can mark cells as not searched, not {fmt}")
        return atomic_write_text(Path(path), json.dumps(to_json(g, unsearched), indent=2) + "\n")
    return atomic_write_text(Path(path), dumps(g, fmt) + "\n")
