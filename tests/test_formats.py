"""Formats: round trips, detection, the safe DARTS parser, NNabla and NB301 specifics."""

import json

import pytest

from cellnas.errors import CellnasError, FormatError
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


def test_a_line_pasted_from_a_search_log_parses_and_a_whole_log_is_refused():
    text = dumps(get_genotype("DARTS_V2"), "darts")
    assert from_darts_text(f"12/01 10:00:00 AM genotype = {text}") == get_genotype("DARTS_V2")
    assert from_darts_text(f"2026-12-01 10:00:00,123 INFO {text}\n") == get_genotype("DARTS_V2")
    with pytest.raises(FormatError, match="holds 2 Genotype"):
        from_darts_text(f"12/01 10:00:00 AM genotype = {text}\n12/01 11:00:00 AM genotype = {text}")
    with pytest.raises(FormatError, match="expected one"):
        from_darts_text("12/01 Genotype(normal=[(")


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


DARTS_V2_TEXT = dumps(get_genotype("DARTS_V2"), "darts")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("normal_concat=[2, 3, 4, 5]", "normal_concat=5", "normal cell: concat must be a list of node numbers, got 5"),
        ("normal_concat=[2, 3, 4, 5]", "normal_concat=None", "concat must be a list of node numbers, got None"),
        ("normal_concat=[2, 3, 4, 5]", "normal_concat='2345'", "concat must be a list of node numbers, got '2345'"),
        ("('sep_conv_3x3', 0)", "('sep_conv_3x3', '0')", "input index must be an integer, got '0'"),
        ("('sep_conv_3x3', 0)", "('sep_conv_3x3', True)", "input index must be an integer, got True"),
        ("('sep_conv_3x3', 0)", "('sep_conv_3x3', 0.0)", "input index must be an integer, got 0.0"),
        ("reduce=[", "reduce=None, x=[", "unknown field 'x'"),
    ],
)
def test_darts_text_with_malformed_fields_is_refused_by_name(old, new, message):
    text = DARTS_V2_TEXT.replace(old, new, 1)
    assert text != DARTS_V2_TEXT
    with pytest.raises(CellnasError, match=message):
        from_darts_text(text)


def test_darts_text_repeating_a_field_is_refused():
    with pytest.raises(FormatError, match="field 'normal_concat' is given more than once"):
        from_darts_text(DARTS_V2_TEXT[:-1] + ", normal_concat=[2])")
    positional_and_keyword = DARTS_V2_TEXT.replace("Genotype(normal=", "Genotype(", 1)[:-1] + ", normal=[])"
    with pytest.raises(FormatError, match="field 'normal' is given more than once"):
        from_darts_text(positional_and_keyword)


@pytest.mark.parametrize("prefix", ["x = 1\nDARTS = ", "x = 1\n", f"{DARTS_V2_TEXT}\n"])
def test_darts_text_with_more_than_one_statement_is_refused(prefix):
    with pytest.raises(FormatError, match=r"single \[NAME =\] Genotype\(.*found 2 statements"):
        from_darts_text(prefix + DARTS_V2_TEXT)


@pytest.mark.parametrize("text", [f"# a = b\n{DARTS_V2_TEXT}", f"  DARTS_V2 = {DARTS_V2_TEXT}  \n", DARTS_V2_TEXT])
def test_darts_text_with_comment_or_assignment_still_parses(text):
    assert from_darts_text(text) == get_genotype("DARTS_V2")


def _nnabla(**changes):
    doc = to_nnabla(get_genotype("DARTS_V2"))
    doc["arch_normal"].update(changes)
    return doc


@pytest.mark.parametrize(
    "node2, message",
    [
        (None, "arch_normal node 2: expected a list of \\[op_id, input\\] pairs, got None"),
        ([[2, 0, 1], [2, 1]], "arch_normal node 2: expected an \\[op_id, input\\] pair, got \\[2, 0, 1\\]"),
        ([["2", 0], [2, 1]], "arch_normal node 2: op id must be an integer 0-7, got '2'"),
        ([[2.0, 0], [2, 1]], "arch_normal node 2: op id must be an integer 0-7, got 2.0"),
        ([[True, 0], [2, 1]], "arch_normal node 2: op id must be an integer 0-7, got True"),
        ([[2, "0"], [2, 1]], "arch_normal node 2: input index must be an integer, got '0'"),
    ],
)
def test_nnabla_malformed_pairs_are_refused_by_name(node2, message):
    with pytest.raises(FormatError, match=message):
        from_nnabla(_nnabla(**{"2": node2}))


def test_nnabla_cell_that_is_not_an_object_is_refused():
    with pytest.raises(FormatError, match="arch_normal must be an object mapping node ids"):
        from_nnabla({"arch_normal": [], "arch_reduction": {}})


_P = "NetworkSelectorDatasetInfo:darts:"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("inputs_node_normal_3", "0_0", "inputs_node_normal_3 = '0_0': a node's two inputs must differ"),
        ("inputs_node_normal_3", "0_5", "inputs_node_normal_3 = '0_5': node 3 reads only nodes 0 .. 2"),
        ("inputs_node_normal_3", "0_1_2", "is not of the form 'i_j'"),
        ("inputs_node_normal_3", " 0_1", "is not of the form 'i_j'"),
        ("edge_normal_14", "sep_conv_3x3", "'.*edge_normal_14' does not exist.*edge_normal_0 .. edge_normal_13"),
        ("edge_normal_x", "sep_conv_3x3", "'.*edge_normal_x' does not exist.*edge_normal_0 .. edge_normal_13"),
        ("inputs_node_reduce_6", "0_1", "'.*inputs_node_reduce_6' does not exist.*inputs_node_reduce_3 .. "),
        ("edge_reduce_12", "skip_connect", "edge_reduce_12' \\(node 5 reads node 3\\), but inputs_node_reduce_5"),
        ("edge_normal_0", 3, "edge_normal_0 = 3: the op must be a name"),
    ],
)
def test_nb301_impossible_or_inconsistent_keys_are_refused(key, value, message):
    cfg = to_nb301(get_genotype("DARTS_V2"))
    cfg[_P + key] = value
    with pytest.raises(FormatError, match=message):
        from_nb301(cfg)


def test_nb301_full_config_with_other_hyperparameters_still_reads():
    cfg = to_nb301(get_genotype("DARTS_V2"))
    cfg.update({"NetworkSelectorDatasetInfo:network": "darts", _P + "init_channels": 32, _P + "layers": 8})
    assert from_nb301(cfg) == get_genotype("DARTS_V2")


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_cell_round_trips_through_nnabla_and_nb301_where_encodable(name):
    g = ZOO[name]
    for to, back in ((to_nnabla, from_nnabla), (to_nb301, from_nb301)):
        try:
            doc = to(g)
        except FormatError:
            continue  # the format cannot hold this cell (it says so)
        assert back(json.loads(json.dumps(doc))) == g


def test_genotype_file_with_a_utf8_byte_order_mark_reads(tmp_path):
    g = get_genotype("DARTS_V2")
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + dumps(g, "json").encode("utf-8"))
    assert load_genotype(str(path)) == g
    assert loads("\ufeff" + dumps(g, "darts")) == g


def _with_hash(g, value: str) -> str:
    doc = json.loads(dumps(g, "json"))
    doc["hash"] = value
    return json.dumps(doc)


def test_json_whose_hash_does_not_match_its_content_warns_and_uses_the_content(tmp_path, caplog):
    import logging

    g = get_genotype("DARTS_V2")
    path = tmp_path / "edited.json"
    path.write_text(_with_hash(g, "0123456789abcdef"))
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        assert load_genotype(str(path)) == g
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING and "\n" not in message
    assert str(path) in message and "0123456789abcdef" in message and g.content_hash() in message
    assert "content is used" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        assert loads(_with_hash(g, "0123456789abcdef")) == g  # text with no file: still warned
        assert loads(_with_hash(g, g.content_hash())) == g
        doc = json.loads(dumps(g, "json"))
        del doc["hash"]
        assert loads(json.dumps(doc)) == g  # no hash: nothing to check
    assert len(caplog.records) == 1 and "0123456789abcdef" in caplog.records[0].getMessage()


@pytest.mark.parametrize("op", ["none", "sep_conv_7x7"])
def test_nb301_reading_refuses_ops_nb301_does_not_have_as_writing_does(op):
    cfg = to_nb301(get_genotype("DARTS_V2"))
    cfg[_P + "edge_normal_2"] = op  # node 3 reads node 0
    with pytest.raises(FormatError, match=f"node 3 uses op '{op}'; NB301 knows max_pool_3x3, .*dil_conv_5x5 "
                                          "\\(no 'none'\\)") as info:  # fmt: skip
        from_nb301(cfg)
    assert "edge_normal_2" in str(info.value)
    with pytest.raises(FormatError, match="NB301 knows max_pool_3x3, .*dil_conv_5x5 \\(no 'none'\\)"):
        to_nb301(get_genotype("BANANAS"))
