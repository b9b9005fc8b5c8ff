"""Config files and config values at the edges: a saved config.json re-runs, wrong types and ranges are refused
with the key named, relative paths are stored absolute (so a run finds its data from anywhere)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cellnas.cli import main
from cellnas.errors import CellnasError
from cellnas.search.config import resolve_config as search_config
from cellnas.train.config import resolve_config as train_config

TINY = ["--channels", "2", "--layers", "3", "--batch-size", "16", "--epochs", "1", "--steps-per-epoch", "2",
        "--no-progress", "--no-plots"]  # fmt: skip


def test_a_saved_search_config_json_runs_again_identically(tmp_path):
    """README: config.json is 'the fully resolved configuration (re-run it with --config)'."""
    assert main(["search", *TINY, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["preset"] is None
    assert main(["search", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b")]) == 0
    a, b = np.load(tmp_path / "a" / "alphas.npz"), np.load(tmp_path / "b" / "alphas.npz")
    np.testing.assert_array_equal(a["normal"], b["normal"])
    assert (tmp_path / "a" / "config.json").read_text() == (tmp_path / "b" / "config.json").read_text()


@pytest.mark.parametrize("resolve", [search_config, train_config], ids=["search", "train"])
@pytest.mark.parametrize(
    "values, needle",
    [
        ({"lr": "fast"}, "\"lr\" in the config (flag --lr) must be a number, got 'fast'"),
        ({"channels": True}, "\"channels\" in the config (flag --channels) must be an integer, got True"),
        ({"channels": 4.5}, "\"channels\" in the config (flag --channels) must be an integer, got 4.5"),
        ({"dataset": 5}, "\"dataset\" in the config (flag --dataset) must be a string"),
        ({"epochs": 1.7}, "\"epochs\" in the config (flag --epochs) must be an integer"),
        ({"extra": [1]}, "\"extra\" in the config must be an object, got [1] (list)"),
        ({"plots": "no"}, "\"plots\" in the config (flag --no-plots) must be true or false"),
        ({"seed": -1}, "--seed must be >= 0"),
        ({"momentum": 2}, "--momentum must be in [0, 1)"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_name_the_key(resolve, values, needle):
    with pytest.raises(CellnasError) as err:
        resolve(None, values)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"remove_edges": ["0-2"]}, "\"remove_edges\" in the config (flag --remove-edge) must be an object"),
        ({"fix_edges": "1-2=sep_conv_5x5"}, "\"fix_edges\" in the config (flag --fix-edge) must be an object"),
        ({"arch_betas": [0.5]}, "\"arch_betas\" in the config must be a list of 2 numbers, got"),
        ({"unrolled_eps": "small"}, "\"unrolled_eps\" in the config must be a number"),
    ],
)
def test_a_search_config_key_is_named_with_its_flag_only_where_one_exists(values, needle):
    with pytest.raises(CellnasError) as err:
        search_config(None, values)
    assert needle in str(err.value)


@pytest.mark.parametrize("command", ["search", "train"])
def test_every_flag_a_config_message_names_is_a_flag_of_the_command(command):
    import dataclasses
    import re

    from cellnas._config import describe_key
    from cellnas.cli import build_parser
    from cellnas.search.config import FLAGS, SearchConfig
    from cellnas.train.config import TrainConfig

    cls, flags = {"search": (SearchConfig, FLAGS), "train": (TrainConfig, None)}[command]
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    options = {o for a in sub._actions for o in a.option_strings}
    named = {f.name: re.findall(r"flag (--[\w-]+)", describe_key(f.name, flags)) for f in dataclasses.fields(cls)}
    assert {k: v for k, v in named.items() if v and v[0] not in options} == {}
    assert not named["extra"]


def test_config_types_accept_what_json_writes():
    cfg = train_config(None, {"lr": 1, "flip": None})  # an integer for a float; null for "the dataset's default"
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    with pytest.raises(CellnasError, match="flip"):
        train_config(None, {"flip": "no"})  # a non-empty string would have switched flips on
    assert search_config(None, {"arch_betas": [0.5, 0.9], "ops": ["sep_conv_3x3", "none"]}).arch_betas == (0.5, 0.9)
    swept = search_config(None, {"epochs": np.int64(3), "lr": np.float32(0.5)})  # a sweep over np.arange
    assert (swept.epochs, swept.lr) == (3, 0.5) and type(swept.epochs) is int and type(swept.lr) is float
    with pytest.raises(CellnasError, match="arch_betas"):
        search_config(None, {"arch_betas": [0.5]})


def test_relative_data_paths_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = train_config(None, {"data_dir": "data", "dataset": "imagefolder:imgs"})
    assert cfg.data_dir == os.path.join(str(tmp_path), "data")
    assert cfg.dataset == "imagefolder:" + os.path.join(str(tmp_path), "imgs")
    assert search_config(None, {"data_dir": "~/d"}).data_dir == os.path.expanduser("~/d")


def test_train_cli_refuses_negative_seeds_and_out_with_resume(tmp_path, capsys):
    assert main(["train", "DARTS_V2", "--seeds=-1", "--out", str(tmp_path / "s")]) == 2
    assert "--seeds needs distinct integers >= 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["train", "--resume", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "drop --out" in capsys.readouterr().err


def test_atomic_writes_take_the_umask_and_refuse_a_directory(tmp_path, monkeypatch):
    import cellnas.runs as runs
    from cellnas.errors import RunError
    from cellnas.runs import atomic_write_json

    monkeypatch.setattr(runs, "_UMASK", 0o022)  # what most shells set (the module reads it once, at import)
    path = atomic_write_json(tmp_path / "config.json", {"a": 1})
    assert (path.stat().st_mode & 0o777) == 0o644  # not mkstemp's 0600
    (tmp_path / "out.png").mkdir()
    with pytest.raises(RunError, match="it is a directory"):
        atomic_write_json(tmp_path / "out.png", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "out.png"]  # no temporary file left


def test_hvp_exact_without_second_order_is_refused():
    with pytest.raises(CellnasError, match="--hvp exact needs --order 2"):
        search_config(None, {"hvp": "exact"})
    assert search_config(None, {"hvp": "exact", "order": 2}).hvp == "exact"


def test_a_run_saved_with_hvp_exact_at_first_order_still_resumes(tmp_path, caplog):
    """Accepted (and without effect) before the check: such runs resume with fd and a warning."""
    import torch

    out = tmp_path / "a"
    assert main(["search", *TINY, "--out", str(out)]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    state["config"]["hvp"] = "exact"
    torch.save(state, out / "checkpoint.pt")
    with caplog.at_level("WARNING"):
        assert main(["search", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert "saved with --hvp exact at order 1" in caplog.text
