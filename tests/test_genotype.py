"""Genotype: validation messages, immutability, hashing, networkx view."""

import pytest

from cellnas.errors import GenotypeError
from cellnas.genotype import Cell, Genotype
from cellnas.zoo import ZOO, get_genotype


def _cell(pairs, concat=(2, 3, 4, 5), k=2):
    return Cell.from_pairs(pairs, concat, k=k)


def _g(normal, reduce=None, concat=(2, 3, 4, 5)):
    return Genotype(normal=_cell(normal, concat), reduce=_cell(reduce or normal, concat))


WIDE = [("sep_conv_3x3", 0), ("skip_connect", 1)] * 4


def test_unknown_op_is_named_with_cell_node_edge_and_valid_ops():
    bad = list(WIDE)
    bad[5] = ("conv_9x9", 1)
    with pytest.raises(GenotypeError, match=r"normal cell, node 4, edge 1: unknown op 'conv_9x9'.*sep_conv_3x3"):
        _g(bad, WIDE)


def test_input_must_be_an_earlier_node():
    bad = list(WIDE)
    bad[2] = ("sep_conv_3x3", 3)  # node 3 reading itself
    with pytest.raises(GenotypeError, match=r"reduce cell, node 3, edge 0: input 3 must be an earlier node"):
        Genotype(normal=_cell(WIDE), reduce=_cell(bad))


def test_wrong_pair_count_is_refused():
    with pytest.raises(GenotypeError, match="multiple of 2"):
        Genotype.from_darts(WIDE[:7], [2, 3, 4, 5], WIDE, [2, 3, 4, 5])


def test_uneven_nodes_are_refused():
    nodes = ((("sep_conv_3x3", 0), ("skip_connect", 1)), (("sep_conv_3x3", 0),))
    with pytest.raises(GenotypeError, match="node 3: has 1 .* but node 2 has 2"):
        Cell(nodes=nodes, concat=(2, 3)).validate("normal")


def test_concat_naming_a_missing_node_is_refused():
    with pytest.raises(GenotypeError, match="concat names node 7"):
        _g(WIDE, concat=(2, 3, 7))


def test_any_node_count_and_any_k():
    k3 = [("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0)] + [
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("avg_pool_3x3", 2),
    ]
    g = Genotype.from_darts(k3, [2, 3], k3, [3], k=3)
    assert g.k == 3 and g.normal.n_nodes == 2 and g.reduce.concat == (3,)
    assert get_genotype("NASNet").normal.n_nodes == 5


def test_genotype_is_immutable_and_hashable():
    g = get_genotype("DARTS_V2")
    with pytest.raises(AttributeError):
        g.normal = g.reduce
    assert {g: 1}[get_genotype("DARTS")] == 1


def test_content_hash_is_stable_and_discriminating():
    hashes = {name: g.content_hash() for name, g in ZOO.items()}
    assert len(set(hashes.values())) == len(ZOO)
    # rebuilt from scratch -> same hash (no dependence on object identity or dict order)
    g = get_genotype("DARTS_V2")
    rebuilt = Genotype.from_dict({"reduce": g.reduce.to_dict(), "normal": g.normal.to_dict()})
    assert rebuilt.content_hash() == hashes["DARTS_V2"]
    assert len(hashes["DARTS_V2"]) == 16 and int(hashes["DARTS_V2"], 16) >= 0


def test_networkx_view_has_inputs_intermediates_output_and_op_labels():
    g = get_genotype("DARTS_V2").to_networkx("normal")
    assert set(g.nodes) == {"c_{k-2}", "c_{k-1}", 2, 3, 4, 5, "c_{k}"}
    assert g.edges["c_{k-2}", 2]["op"] == "sep_conv_3x3"
    assert g.edges[2, 5]["op"] == "dil_conv_3x3"
    assert all(g.has_edge(n, "c_{k}") for n in (2, 3, 4, 5))
    assert g.number_of_edges() == 8 + 4


def test_duplicate_inputs_are_kept_in_the_graph():
    cell = _cell([("sep_conv_3x3", 0), ("skip_connect", 0)] * 4)
    g = Genotype(normal=cell, reduce=cell).to_networkx()
    assert g.edges["c_{k-2}", 2]["ops"] == ["sep_conv_3x3", "skip_connect"]


@pytest.mark.parametrize("concat", [5, None, "2345"])
def test_concat_that_is_not_a_list_is_refused(concat):
    with pytest.raises(GenotypeError, match=r"normal cell: concat must be a list of node numbers, got"):
        Genotype.from_darts(WIDE, concat, WIDE, [2, 3, 4, 5])


@pytest.mark.parametrize("value", [2.5, 2.0, "2", True])
def test_concat_entries_must_be_integers(value):
    with pytest.raises(GenotypeError, match=r"concat must be a list of node numbers \(integers\), got"):
        _cell(WIDE, concat=[value, 3])


@pytest.mark.parametrize("index", ["0", True, 1.0, 1.5, None])
def test_input_index_must_be_an_integer_not_coerced(index):
    with pytest.raises(GenotypeError, match="input index must be an integer"):
        _cell([("sep_conv_3x3", index)] + WIDE[1:])


@pytest.mark.parametrize("pair", [("sep_conv_3x3", 0, 1), ("sep_conv_3x3",), "ab", {"sep_conv_3x3": 0, "x": 1}])
def test_anything_but_an_op_input_pair_is_refused(pair):
    with pytest.raises(GenotypeError, match="expected an \\(op, input\\) pair"):
        _cell([pair] + WIDE[1:])


def test_numpy_integers_are_still_integers():
    np = pytest.importorskip("numpy")
    cell = _cell([("sep_conv_3x3", np.int64(0)), ("skip_connect", 1)] * 4, concat=np.array([2, 3, 4, 5]))
    assert cell == _cell(WIDE) and type(cell.nodes[0][0][1]) is int and type(cell.concat[0]) is int


@pytest.mark.parametrize(
    "cell, message",
    [
        ({"nodes": [[["sep_conv_3x3", 0], ["skip_connect", 1]]]}, "normal cell: missing key 'concat'"),
        ({"concat": [2]}, "normal cell: missing key 'nodes'"),
        ([1, 2], "normal cell must be an object with 'nodes' and 'concat', got \\[1, 2\\]"),
        (None, "normal cell must be an object with 'nodes' and 'concat', got None"),
        ({"nodes": "abc", "concat": [2]}, "normal cell: nodes must be a list of nodes"),
        ({"nodes": {}, "concat": [2]}, "normal cell: nodes must be a list of nodes"),
        ({"nodes": [[["sep_conv_3x3", 0], ["skip_connect", 1]]], "concat": [2.5]}, "got 2.5 in \\[2.5\\]"),
    ],
)
def test_malformed_cell_dicts_say_what_is_wrong(cell, message):
    good = get_genotype("DARTS_V2").reduce.to_dict()
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_dict({"normal": cell, "reduce": good})


NONE_CELL = [("none", 0), ("none", 1)] * 4


def test_a_cell_with_only_none_edges_is_valid_data_that_reports_its_constant_output():
    from cellnas.formats import dumps, loads

    g = _g(NONE_CELL, WIDE)  # read, written, converted like any genotype
    assert all(loads(dumps(g, fmt)) == g for fmt in ("json", "darts", "nnabla"))
    assert g.normal.signal_problem("normal") == "cell 'normal' has only 'none' edges: its output is constant zero"
    assert g.reduce.signal_problem("reduce") is None
    assert g.signal_problems() == [g.normal.signal_problem("normal")]
    assert all(get_genotype(name).signal_problems() == [] for name in ZOO)  # BANANAS has a 'none' edge


def test_a_cell_reached_from_its_inputs_only_through_none_edges_has_a_constant_output():
    # node 2 = none + none; nodes 3-5 read only node 2, so no concatenated node sees the cell's inputs
    cell = _cell([("none", 0), ("none", 1)] + [("sep_conv_3x3", 2), ("skip_connect", 2)] * 3)
    assert cell.reaches_output() is False
    assert "cell 'normal' reaches its output only through 'none' edges" in cell.signal_problem("normal")
    # reached from input 0 only: fine while node 0 carries a signal, constant when only node 1 does
    from_zero = _cell([("sep_conv_3x3", 0), ("none", 1)] * 4)
    assert from_zero.reaches_output((0, 1)) and from_zero.reaches_output((0,))
    assert not from_zero.reaches_output((1,))
    assert _cell(WIDE, concat=(0,)).reaches_output((0,))  # an input node in concat carries its signal


def test_architecture_hash_ignores_the_listing_order_of_a_node_and_of_concat():
    import json

    from cellnas.formats import from_nb301, to_nb301

    g = get_genotype("DARTS_V2")
    pairs = g.normal.pairs
    swapped = Genotype.from_darts(pairs[:6] + [pairs[7], pairs[6]], [5, 4, 3, 2], g.reduce.pairs, g.reduce.concat)
    assert swapped.content_hash() != g.content_hash() and swapped.architecture_hash() == g.architecture_hash()
    assert swapped.canonical() == g.canonical() and g.canonical().canonical() == g.canonical()
    other_op = Genotype.from_darts(pairs[:7] + [("max_pool_3x3", 2)], g.normal.concat, g.reduce.pairs,
                                   g.reduce.concat)  # fmt: skip
    assert other_op.architecture_hash() != g.architecture_hash()
    # NB301 keeps no order within a node: a config with its keys sorted reads back in another listing
    sorted_config = dict(sorted(json.loads(json.dumps(to_nb301(g))).items()))
    back = from_nb301(sorted_config)
    assert back.content_hash() != g.content_hash() and back.architecture_hash() == g.architecture_hash()
