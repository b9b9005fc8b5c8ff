"""Formats: round trips, detection, the safe DARTS parser, NNabla and NB301 specifics."""

import json

import pytest

from cellnas.errors import FormatError
from cellnas.formats import (
    FORMATS,
    dumps,
    from_darts_text,
    from_nb301,
    from_nnabla,
    load_genotype,
    loads,
    save_genotype,
    to_nb301,
    to_nnabla,
)
from cellnas.zoo import ZOO, get_genotype


@pytest.mark.parametrize("fmt", FORMATS)
def test_darts_v2_round_trips_through_every_format(fmt, tmp_path):
    g = get_genotype("DARTS_V2")
    assert loads(dumps(g, fmt)) == g
    path = save_genotype(g, tmp_path / f"g.{fmt}.json", fmt)
    assert load_genotype(str(path)) == g


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_cell_round_trips_through_json_and_darts_text(name):
    g = ZOO[name]
    assert loads(dumps(g, "json")) == g
    assert from_darts_text(dumps(g, "darts")) == g


def test_published_darts_text_with_range_and_assignment_parses():
    text = (
        "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
        "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), "
        "('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
        "('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
    )
    assert from_darts_text(text) == get_genotype("DARTS_V2")


def test_darts_text_holding_code_is_rejected_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = (
        f"Genotype(normal=__import__('pathlib').Path({str(marker)!r}).touch(), normal_concat=[2], "
        "reduce=[], reduce_concat=[2])"
    )
    with pytest.raises(FormatError, match="literal"):
        from_darts_text(evil)
    assert not marker.exists()
    with pytest.raises(FormatError):
        from_darts_text("os.system('true')")


def test_nnabla_file_in_the_published_form_reads():
    # the form of the NNabla README: string node keys, [op_id, input] pairs, 'arch_reduction'
    doc = {
        "arch_normal": {"2": [[6, 0], [0, 1]], "3": [[6, 0], [2, 1]], "4": [[2, 1], [6, 0]], "5": [[6, 0], [2, 1]]},
        "arch_reduction": {"2": [[4, 0], [4, 1]], "3": [[6, 2], [4, 1]], "4": [[4, 0], [6, 2]], "5": [[6, 2], [5, 0]]},
    }
    g = from_nnabla(json.loads(json.dumps(doc)))
    assert g.normal.nodes[0] == (("skip_connect", 0), ("dil_conv_3x3", 1))
    assert g.reduce.nodes[3] == (("skip_connect", 2), ("avg_pool_3x3", 0))
    assert to_nnabla(g) == doc


def test_nnabla_unknown_op_id_lists_valid_ids():
    doc = {"arch_normal": {"2": [[9, 0], [0, 1]]}, "arch_reduction": {"2": [[4, 0], [4, 1]]}}
    with pytest.raises(FormatError, match="unknown op id 9.*0=dil_conv_3x3"):
        from_nnabla(doc)


def test_nb301_encoding_matches_the_spec_layout():
    cfg = to_nb301(get_genotype("DARTS_V2"))
    p = "NetworkSelectorDatasetInfo:darts:"
    # node 5 of the normal cell: skip(0) + dil3(2); node-5 edges start at offset 9
    assert cfg[p + "edge_normal_9"] == "skip_connect" and cfg[p + "edge_normal_11"] == "dil_conv_3x3"
    assert cfg[p + "inputs_node_normal_5"] == "0_2"
    assert p + "inputs_node_normal_2" not in cfg
    assert sum(k.startswith(p + "edge_normal_") for k in cfg) == 8


def test_nb301_refuses_duplicate_inputs_and_none():
    with pytest.raises(FormatError, match="'none'"):
        to_nb301(get_genotype("BANANAS"))
    g = get_genotype("DARTS_V2")
    dup = type(g).from_darts([("sep_conv_3x3", 0), ("skip_connect", 0)] * 4, [2, 3, 4, 5], g.reduce.pairs, [2, 3, 4, 5])
    with pytest.raises(FormatError, match="node 2 reads node 0 twice"):
        to_nb301(dup)


def test_nb301_round_trip_is_exact_and_foreign_key_order_gives_the_same_cell():
    g = get_genotype("DARTS_V1")
    cfg = to_nb301(g)
    assert from_nb301(cfg) == g
    shuffled = dict(sorted(cfg.items()))  # a config written by other tools: key order differs
    back = from_nb301(shuffled)
    for name in ("normal", "reduce"):
        assert [sorted(n) for n in back.cell(name).nodes] == [sorted(n) for n in g.cell(name).nodes]


def test_load_genotype_resolves_zoo_names_files_run_dirs_and_text(tmp_path):
    g = get_genotype("DARTS_V1")
    assert load_genotype("darts_v1") == g
    (tmp_path / "run").mkdir()
    save_genotype(g, tmp_path / "run" / "genotype.json")
    assert load_genotype(str(tmp_path / "run")) == g
    assert load_genotype(dumps(g, "darts")) == g


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"format": "cellnas.genotype", "version": 1, "normal": ', "truncated"),
        ('{"format": "cellnas.genotype", "version": 7, "normal": {}, "reduce": {}}', "version 7"),
        ("hello", "not a genotype"),
        ('{"a": 1}', "not a known genotype format"),
    ],
)
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FormatError, match=message) as info:
        load_genotype(str(path))
    assert str(path) in str(info.value)


def test_missing_file_and_unknown_name_errors():
    with pytest.raises(FormatError, match="does not exist"):
        load_genotype("no/such/file.json")
    with pytest.raises(FormatError, match="DARTS_V2"):
        load_genotype("NOT_A_CELL")
