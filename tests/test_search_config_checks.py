"""Edge ablations on presets and config files, duplicate and emptying ablations, --no-record-wiring, dsnas keys."""

import json
import logging

import pytest

from cellnas.cli import build_parser, main
from cellnas.commands.search import _overrides
from cellnas.errors import CellnasError
from cellnas.search.config import PRESETS, resolve_config

ABLATION = "wiring-dsnas-ablation"


def _resolve(argv: list[str]):
    """The config `cellnas search ARGV` would run, resolved without running it."""
    args = build_parser().parse_args(["search", *argv])
    overrides = _overrides(args)
    named = overrides.pop("preset", None)
    return resolve_config(args.preset or named, overrides)


def test_a_fixed_edge_adds_to_the_presets_ablations_and_the_merge_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="cellnas.search.config"):
        cfg = _resolve(["--preset", ABLATION, "--fix-edge", "normal:1-3=skip_connect"])
    assert cfg.fix_edges == {"normal": {"1-2": "sep_conv_5x5", "1-3": "skip_connect"}}
    assert cfg.remove_edges == {"normal": ["0-2", "0-3"]}
    assert "merged" in caplog.text and "1-3" in caplog.text
    assert PRESETS[ABLATION]["fix_edges"] == {"normal": {"1-2": "sep_conv_5x5"}}  # the preset itself is unchanged


def test_a_removed_edge_adds_to_the_presets_removals():
    cfg = _resolve(["--preset", ABLATION, "--remove-edge", "normal:1-3"])
    assert cfg.remove_edges == {"normal": ["0-2", "0-3", "1-3"]}
    assert cfg.fix_edges == {"normal": {"1-2": "sep_conv_5x5"}}


def test_the_command_line_wins_over_the_presets_entry_for_the_same_edge():
    cfg = _resolve(["--preset", ABLATION, "--fix-edge", "normal:0-2=skip_connect", "--remove-edge", "normal:1"])
    assert cfg.remove_edges == {"normal": ["0-3", "1"]}  # 0-2 is fixed now; edge 1 (1-2) removed, no longer fixed
    assert cfg.fix_edges == {"normal": {"0-2": "skip_connect"}}


def test_a_config_files_ablations_are_added_to_as_well(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"all_normal": True, "remove_edges": {"normal": ["0-2"]},
                             "fix_edges": {"normal": {"1-2": "sep_conv_5x5"}}}))  # fmt: skip
    cfg = _resolve(["--config", str(f), "--remove-edge", "normal:1-2", "--fix-edge", "normal:0-3=skip_connect"])
    assert cfg.remove_edges == {"normal": ["0-2", "1-2"]}
    assert cfg.fix_edges == {"normal": {"0-3": "skip_connect"}}


def test_an_edge_fixed_to_two_ops_is_refused(capsys, tmp_path):
    argv = ["search", "--fix-edge", "normal:1-2=sep_conv_5x5", "--fix-edge", "normal:1=skip_connect",
            "--out", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "normal edge 1-2 twice, to sep_conv_5x5 and to skip_connect" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_an_edge_removed_or_fixed_twice_alike_counts_once():
    cfg = _resolve(["--remove-edge", "normal:0-2", "--remove-edge", "normal:0", "--fix-edge",
                    "normal:1-3=skip_connect", "--fix-edge", "normal:1-3=skip_connect"])  # fmt: skip
    assert cfg.remove_edges == {"normal": ["0-2"]} and cfg.fix_edges == {"normal": {"1-3": "skip_connect"}}


def test_removing_every_edge_of_a_cell_is_refused(capsys, tmp_path):
    edges = [a for e in ("0-2", "1-2", "0-3", "1-3", "2-3") for a in ("--remove-edge", f"normal:{e}")]
    argv = ["search", "--nodes", "2", "--all-normal", "--mode", "dsnas", *edges, "--out", str(tmp_path / "r"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "removes every edge of the normal cell" in err and "Traceback" not in err
    with pytest.raises(CellnasError, match="removes every edge of the normal cell"):
        resolve_config(None, {"nodes": 1, "all_normal": True, "remove_edges": {"normal": ["0-2", "1"]}})
    resolve_config(None, {"nodes": 2, "all_normal": True, "remove_edges": {"normal": ["0-2", "1-2", "0-3", "1-3"]}})


def test_removed_and_fixed_is_refused_when_the_config_resolves():
    with pytest.raises(CellnasError, match="normal edge.s. 1-2 both removed and fixed"):
        _resolve(["--remove-edge", "normal:1-2", "--fix-edge", "normal:1-2=skip_connect"])


def test_record_wiring_set_by_a_preset_names_the_preset_and_the_way_out():
    with pytest.raises(CellnasError, match="--preset wiring-dsnas sets --record-wiring, --no-record-wiring turns"):
        _resolve(["--preset", "wiring-dsnas", "--amp", "bf16"])
    cfg = _resolve(["--preset", "wiring-dsnas", "--no-record-wiring", "--amp", "bf16"])
    assert cfg.record_wiring is False and cfg.amp == "bf16"
    assert _resolve(["--record-wiring"]).record_wiring is True
    with pytest.raises(CellnasError, match="--record-wiring needs --amp off.*--no-record-wiring turns it off"):
        _resolve(["--record-wiring", "--amp", "bf16"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dsnas_eval_bn": "foo"}, '"dsnas_eval_bn" in the config must be batch or running'),
        ({"dsnas_reward_clip": -1}, '"dsnas_reward_clip" in the config must be positive'),
        ({"dsnas_arch_clip": 0}, '"dsnas_arch_clip" in the config must be positive'),
        ({"dsnas_alpha_loss": "x"}, '"dsnas_alpha_loss" in the config must be per-edge or reference'),
    ],
)
@pytest.mark.parametrize("mode", ["bilevel", "single-level", "dsnas"])
def test_dsnas_keys_are_checked_in_every_mode(values, message, mode):
    with pytest.raises(CellnasError, match=message):
        resolve_config(None, {"mode": mode, **values})


def test_a_config_files_bad_dsnas_key_is_refused_in_the_default_mode(capsys, tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"dsnas_eval_bn": "foo"}))
    assert main(["search", "--config", str(f), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert '"dsnas_eval_bn" in the config must be batch or running' in capsys.readouterr().err


def test_a_presets_edge_that_the_cell_lacks_says_so_and_lists_the_valid_edges():
    with pytest.raises(CellnasError) as exc:
        _resolve(["--preset", ABLATION, "--nodes", "1"])
    msg = str(exc.value)
    assert "normal:0-3 (from --preset wiring-dsnas-ablation)" in msg and "valid edges: 0-2, 1-2" in msg
    with pytest.raises(CellnasError) as exc:
        _resolve(["--nodes", "2", "--all-normal", "--fix-edge", "normal:0-5=skip_connect"])
    msg = str(exc.value)
    assert "--fix-edge normal:0-5=skip_connect:" in msg and "from --preset" not in msg
    assert "valid edges: 0-2, 1-2, 0-3, 1-3, 2-3" in msg
