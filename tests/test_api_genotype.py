"""The genotype's Python API (review of the API): k read back from DARTS text, one k per genotype, Cell checks its
shape, wrong types and natural inputs give clear errors or are accepted."""

from __future__ import annotations

import collections
import json
import types

import pytest

from cellnas import formats
from cellnas.errors import CellnasError, FormatError, GenotypeError
from cellnas.formats import from_darts_text, load_genotype, loads, save_genotype, to_json
from cellnas.genotype import Cell, Genotype, infer_k
from cellnas.zoo import ZOO, get_genotype

OPS = ("sep_conv_3x3", "skip_connect", "max_pool_3x3", "dil_conv_5x5", "avg_pool_3x3")


def _pairs(n_nodes: int, k: int, shift: int = 0) -> list[tuple[str, int]]:
    """A flat DARTS pair list: node j+2 reads k of its predecessors (repeats allowed when it has fewer than k)."""
    out = []
    for j in range(n_nodes):
        dst = j + 2
        for e in range(k):
            out.append((OPS[(j + e + shift) % len(OPS)], (dst - 1 - e - shift) % dst))
    return out


def _genotype(n_nodes: int, k: int, normal_concat=None, reduce_concat=None) -> Genotype:
    full = list(range(2, n_nodes + 2))
    return Genotype.from_darts(_pairs(n_nodes, k), normal_concat or full, _pairs(n_nodes, k, 1), reduce_concat or full,
                               k=k)  # fmt: skip


# -- 1. k is read back from DARTS text ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("n_nodes", [1, 2, 4, 5])
def test_darts_text_of_any_k_and_node_count_reads_back_equal(k, n_nodes):
    g = _genotype(n_nodes, k)
    assert g.k == k
    assert loads(str(g)) == g
    assert load_genotype(str(g)) == g  # the path cellnas.train(str(result.genotype), ...) takes
    assert from_darts_text(str(g)) == g


@pytest.mark.parametrize("k", [1, 2, 3])
def test_darts_text_with_a_partial_concat_ending_at_the_last_node_reads_back(k):
    g = _genotype(5, k, normal_concat=[4, 5, 6], reduce_concat=[2, 3, 6])  # NASNet/ENAS-style concat lists
    assert loads(str(g)) == g


def test_a_k1_search_genotype_reads_back_through_train_s_loader():
    g = Genotype.from_darts(
        [("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 2), ("sep_conv_3x3", 3)], [2, 3, 4, 5],
        [("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 3), ("dil_conv_3x3", 4)], [2, 3, 4, 5], k=1,
    )  # fmt: skip
    assert load_genotype(str(g)) == g and load_genotype(str(g)).k == 1


def test_every_zoo_genotype_reads_back_as_k2():
    for name, g in ZOO.items():
        assert loads(str(g)) == g, name


@pytest.mark.parametrize("k", [1, 2, 3])
def test_from_dict_of_darts_fields_infers_k(k):
    g = _genotype(4, k)
    fields = {"normal": [list(p) for p in g.normal.pairs], "normal_concat": list(g.normal.concat),
              "reduce": [list(p) for p in g.reduce.pairs], "reduce_concat": list(g.reduce.concat)}  # fmt: skip
    assert Genotype.from_dict(fields) == g
    assert Genotype.from_dict({**fields, "k": k}) == g
    assert loads(json.dumps(fields)) == g
    assert Genotype.from_dict(g.to_dict()) == g


def test_explicit_k_reads_a_cell_whose_last_node_is_dead():
    g = _genotype(4, 2, normal_concat=[2, 3], reduce_concat=[2, 3])
    assert from_darts_text(str(g), k=2) == g
    assert loads(str(g), k=2) == g
    one_dead = _genotype(4, 2, reduce_concat=[2, 3])  # read as k=2 and k=4: refused, not guessed
    with pytest.raises(GenotypeError, match="k=2 .* k=4: both cells .* give k"):
        loads(str(one_dead))
    assert loads(str(one_dead), k=2) == one_dead


def test_infer_k_falls_back_to_darts_k2_when_the_counts_do_not_divide():
    assert infer_k([("skip_connect", 0)] * 7, [2, 3, 4, 5], [("skip_connect", 0)] * 8, [2, 3, 4, 5]) == 2
    with pytest.raises(GenotypeError, match="multiple of 2"):
        Genotype.from_darts([("skip_connect", 0)] * 7, [2, 3, 4, 5], [("skip_connect", 0)] * 8, [2, 3, 4, 5])


# -- 2. one k per genotype --------------------------------------------------------------------------------------------


def test_mixed_k_cells_are_refused_naming_both():
    k2, k1 = _genotype(4, 2).normal, _genotype(4, 1).reduce
    with pytest.raises(GenotypeError, match=r"normal cell has k=2 .* reduce cell has k=1: both cells .* same k"):
        Genotype(normal=k2, reduce=k1)


def test_mixed_k_darts_pairs_are_refused_naming_both():
    normal, reduce = _pairs(4, 2), _pairs(4, 1)
    with pytest.raises(GenotypeError, match=r"k=2 inputs per node, but the reduce cell .* k=1: both cells"):
        Genotype.from_darts(normal, [2, 3, 4, 5], reduce, [2, 3, 4, 5])
    darts = f"Genotype(normal={normal!r}, normal_concat=[2, 3, 4, 5], reduce={reduce!r}, reduce_concat=[2, 3, 4, 5])"
    with pytest.raises(GenotypeError, match="same k"):
        loads(darts)


# -- 3. Cell checks its shape ---------------------------------------------------------------------------------------


def test_cell_refuses_a_concat_naming_a_missing_node():
    with pytest.raises(GenotypeError, match=r"concat names node 42, which does not exist \(nodes 0 \.\. 2\)"):
        Cell(nodes=((("foo", 9),),), concat=(42,))


def test_cell_refuses_no_nodes_an_empty_node_and_an_empty_or_repeating_concat():
    with pytest.raises(GenotypeError, match="no intermediate nodes"):
        Cell(nodes=[], concat=[2])
    with pytest.raises(GenotypeError, match="node 3: has no .op, input. pairs"):
        Cell(nodes=[[("skip_connect", 0)], []], concat=[2])
    with pytest.raises(GenotypeError, match="concat list is empty"):
        Cell(nodes=[[("skip_connect", 0)]], concat=[])
    with pytest.raises(GenotypeError, match="repeats a node"):
        Cell(nodes=[[("skip_connect", 0)]], concat=[2, 2])


def test_a_genotype_refuses_what_a_lone_cell_leaves_to_validate():
    cell = Cell(nodes=((("foo", 9),),), concat=(2,))  # op and input are checked where the cell type is known
    ok = _genotype(1, 1).normal
    with pytest.raises(GenotypeError, match=r"normal cell, node 2, edge 0: unknown op 'foo'; valid ops: .*skip"):
        Genotype(normal=cell, reduce=ok)
    with pytest.raises(GenotypeError, match=r"reduce cell, node 2, edge 0: input 9 must be an earlier node"):
        Genotype(normal=ok, reduce=Cell(nodes=((("skip_connect", 9),),), concat=(2,)))


def test_shape_errors_from_darts_name_the_cell_once():
    with pytest.raises(GenotypeError, match=r"^reduce cell: concat names node 9") as info:
        Genotype.from_darts(_pairs(4, 2), [2, 3, 4, 5], _pairs(4, 2), [2, 9], k=2)
    assert "cell: cell" not in str(info.value)


# -- 4. wrong types -------------------------------------------------------------------------------------------------


def test_genotype_of_pair_lists_is_refused_naming_the_constructors():
    with pytest.raises(GenotypeError, match=r"Genotype\(normal=\.\.\.\) takes a Cell, got list.*from_darts.*pairs"):
        Genotype(normal=_pairs(4, 2), reduce=_pairs(4, 2))
    with pytest.raises(GenotypeError, match=r"Genotype\(reduce=\.\.\.\) takes a Cell, got dict"):
        Genotype(normal=_genotype(4, 2).normal, reduce={"nodes": [], "concat": []})


@pytest.mark.parametrize("name", [None, 3, b"DARTS"])
def test_zoo_refuses_a_name_that_is_not_a_string_listing_the_names(name):
    with pytest.raises(CellnasError, match=r"must be a string.*valid choices: .*DARTS_V2"):
        get_genotype(name)


def test_loads_reads_utf8_bytes():
    g = get_genotype("DARTS_V2")
    assert loads(str(g).encode("utf-8")) == g
    assert loads(formats.dumps(g).encode("utf-8")) == g
    with pytest.raises(FormatError, match="not UTF-8"):
        loads(b"\xff\xfe Genotype(")


@pytest.mark.parametrize("bad", [None, 3, ["Genotype("]])
def test_loads_refuses_what_is_not_text(bad):
    with pytest.raises(FormatError, match=r"loads\(\) parses genotype text .*load_genotype"):
        loads(bad)


@pytest.mark.parametrize("bad", ["2", None, 0, 1.5])
def test_from_darts_refuses_a_bad_k(bad):
    if bad is None:  # None means "infer"
        assert Genotype.from_darts(_pairs(4, 2), [2, 3, 4, 5], _pairs(4, 2), [2, 3, 4, 5], k=bad).k == 2
        return
    with pytest.raises(GenotypeError, match="k must be an integer >= 1"):
        Genotype.from_darts(_pairs(4, 2), [2, 3, 4, 5], _pairs(4, 2), [2, 3, 4, 5], k=bad)


# -- 5. natural inputs to load_genotype (and so to cellnas.train) ----------------------------------------------------


def test_load_genotype_accepts_a_genotype_its_dicts_and_a_search_result():
    g = get_genotype("NASNet")
    assert load_genotype(g) is g
    assert load_genotype(g.to_dict()) == g
    assert load_genotype(to_json(g)) == g
    assert load_genotype(formats.to_nnabla(get_genotype("DARTS"))) == get_genotype("DARTS")
    assert load_genotype(types.SimpleNamespace(genotype=g, run_dir=None)) is g  # a SearchResult's shape
    assert load_genotype(str(g).encode("utf-8")) == g


def test_load_genotype_accepts_a_darts_namedtuple():
    DartsGenotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    g = _genotype(4, 1)
    darts = DartsGenotype(g.normal.pairs, range(2, 6), g.reduce.pairs, range(2, 6))
    assert load_genotype(darts) == g


def test_load_genotype_refuses_other_objects_saying_what_to_pass():
    with pytest.raises(FormatError, match=r"cannot load a genotype from float .*Genotype, its to_dict\(\), a search"):
        load_genotype(1.5)
    with pytest.raises(FormatError, match=r"SimpleNamespace\.genotype is NoneType None, not a Genotype"):
        load_genotype(types.SimpleNamespace(genotype=None))


# -- 6. save_genotype creates missing folders, and says so ----------------------------------------------------------


def test_save_genotype_creates_missing_folders_as_documented(tmp_path):
    g = get_genotype("DARTS")
    path = save_genotype(g, tmp_path / "a" / "b" / "x.json")
    assert load_genotype(path) == g
    assert "Missing parent folders" in save_genotype.__doc__
