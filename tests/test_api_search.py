"""The Python API of a search, ``cellnas.search(...)``: its arguments (config, preset, keyword overrides, resume),
the copy of the config each search works on, clear errors for arguments of the wrong kind, and its documentation."""

import copy
import json

import numpy as np
import pytest

import cellnas
from cellnas.errors import CellnasError
from cellnas.search import SearchConfig, SearchResult, search
from cellnas.search.loop import RESUME_OVERRIDES
from cellnas.train.config import TrainConfig

#: One step of one epoch of the smallest supernet: every search here takes about a second.
TINY = dict(dataset="digits", epochs=1, steps_per_epoch=1, channels=4, layers=3, batch_size=16, progress=False,
            plots=False)  # fmt: skip


def tiny_config(**changes) -> SearchConfig:
    return SearchConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished tiny search started from a config object with keyword overrides: ``(config, its copy taken
    before the search, result)``. The tests read it and never change it."""
    cfg = tiny_config()
    before = copy.deepcopy(cfg)
    result = search(cfg, out=tmp_path_factory.mktemp("api") / "run", channels=6, seed=3)
    return cfg, before, result


# -- config, preset and keyword overrides (a fresh search) ----------------------------------------------------------
def test_keyword_overrides_apply_on_top_of_a_config(run):
    _, _, result = run
    assert (result.config.channels, result.config.seed, result.config.epochs) == (6, 3, 1)
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert (saved["channels"], saved["seed"]) == (6, 3)


def test_search_leaves_the_callers_config_untouched_and_returns_its_own(run):
    cfg, before, result = run
    assert cfg == before and cfg.data_dir is None  # validate() filled in data_dir on the search's copy only
    assert result.config is not cfg and result.config.extra is not cfg.extra
    assert result.config.data_dir is None or isinstance(result.config.data_dir, str)


def test_two_searches_from_one_config_object_keep_their_own_configs(tmp_path):
    cfg = tiny_config()
    first = search(cfg, out=tmp_path / "a")
    cfg.seed = 7  # a sweep that changes its config between calls
    second = search(cfg, out=tmp_path / "b")
    assert (first.config.seed, second.config.seed) == (2, 7)
    assert first.config is not second.config


def test_config_and_preset_together_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(CellnasError, match="either a config or a preset, not both"):
        search(tiny_config(), out=tmp_path / "run", preset="darts-cifar10")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"channels": 0}, "--channels must be >= 1"),
    ({"chanels": 6}, "unknown search config key.*chanels.*valid:.*channels"),
    ({"order": "2"}, '"order" in the config.*must be an integer'),
])  # fmt: skip
def test_keyword_overrides_on_a_config_are_validated(tmp_path, overrides, message):
    with pytest.raises(CellnasError, match=message):
        search(tiny_config(), out=tmp_path / "run", **overrides)
    assert not (tmp_path / "run").exists()


def test_a_dict_is_read_as_config_keys_on_top_of_the_preset_and_under_the_overrides(tmp_path):
    keys = {**TINY, "seed": 4}
    given = copy.deepcopy(keys)
    result = cellnas.search(keys, out=tmp_path / "run", preset="digits", channels=6)
    assert keys == given  # the caller's dict is not changed either
    cfg = result.config
    assert (cfg.preset, cfg.channels, cfg.layers, cfg.seed, cfg.epochs) == ("digits", 6, 3, 4, 1)


# -- arguments of the wrong kind --------------------------------------------------------------------------------------
def test_a_training_config_is_refused_as_one():
    with pytest.raises(CellnasError, match=r"TrainConfig.*training config.*cellnas\.train"):
        search(TrainConfig())


@pytest.mark.parametrize(("config", "message"), [
    ("darts-cifar10", r"must be a SearchConfig, a dict of its keys or None.*give preset='darts-cifar10'"),
    (["epochs", 1], "must be a SearchConfig, a dict of its keys or None, got list"),
    ({1: "epochs"}, "key names as strings"),
    ({"epochs": 1, "chanels": 4}, "unknown search config key.*chanels"),
])  # fmt: skip
def test_a_config_of_the_wrong_kind_is_refused_naming_what_is_accepted(config, message):
    with pytest.raises(CellnasError, match=message):
        search(config)


def test_out_must_be_a_path():
    with pytest.raises(CellnasError, match="out= must be a path"):
        search(tiny_config(), out=3)


# -- resume -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "named"), [
    ({"channels": 8}, "channels"),
    ({"config": SearchConfig(channels=32)}, "config"),
    ({"preset": "darts-cifar10"}, "preset"),
    ({"out": "elsewhere"}, "out"),
    ({"seed": 5, "lr": 0.1, "epochs": 3}, "lr, seed"),
])  # fmt: skip
def test_resume_refuses_what_cannot_change_naming_what_can(run, kwargs, named):
    run_dir = run[2].run_dir
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    with pytest.raises(CellnasError, match="cannot change on resume") as err:
        search(resume=run_dir, **kwargs)
    text = str(err.value)
    assert f"; {named} cannot change" in text and all(k in text for k in RESUME_OVERRIDES)
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before  # nothing written


def test_resume_refuses_an_unknown_key_and_a_training_config(run):
    run_dir = run[2].run_dir
    with pytest.raises(CellnasError, match="unknown search config key.*epoch_s"):
        search(resume=run_dir, epoch_s=3)
    with pytest.raises(CellnasError, match="training config"):
        search(TrainConfig(), resume=run_dir)


def test_resume_of_a_finished_run_returns_a_result_like_the_search_did(run):
    _, _, first = run
    again = search(resume=first.run_dir, device="cpu", progress=False, plots=None)
    assert again.resumed and not first.resumed
    assert again.config is not first.config
    assert again.config.to_dict() == {**first.config.to_dict(), "device": "cpu"}  # the override given, the rest saved
    assert again.genotype == first.genotype and again.ops == first.ops == tuple(first.config.ops)
    for name in ("normal", "reduce"):
        np.testing.assert_allclose(again.alphas[name], first.alphas[name], rtol=1e-6)


# -- what a result says ---------------------------------------------------------------------------------------------
def test_result_alphas_are_softmax_per_cell_with_the_op_of_each_column(run):
    result = run[2]
    with np.load(result.run_dir / "alphas.npz") as raw:
        assert tuple(raw["ops"]) == result.ops
        for name in ("normal", "reduce"):
            p = result.alphas[name]
            assert p.shape == raw[name].shape == (14, len(result.ops))  # edges x ops
            np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
            e = np.exp(raw[name] - raw[name].max(axis=1, keepdims=True))  # the file holds the logits α
            np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    assert SearchResult(None, result.run_dir, [], {}, 0.0).ops == ()  # built by hand, positionally: still works


def test_search_and_its_result_are_documented():
    doc = search.__doc__
    for word in ("config :", "out :", "resume :", "preset :", "**overrides", "Returns", "Raises", "SearchResult",
                 "SPEC 1.5", "SPEC 1.6", "SPEC 1.7", "RESUME_OVERRIDES", ">>> result = search("):  # fmt: skip
        assert word in doc, word
    assert cellnas.search.search is search
    result_doc = SearchResult.__doc__
    for word in ("softmax(α)", "sums to 1", "(edges, ops)", "alphas.npz", "logits", "ops", "search_seconds"):
        assert word in result_doc, word
