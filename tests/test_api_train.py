"""The Python API of retraining (``cellnas.train(...)``, ``train_seeds``): arguments a resume would drop are refused,
the caller's config is never changed and each result owns its own, wrong types are refused with a
:class:`~cellnas.errors.CellnasError` saying what is taken, and path-valued config keys take a :class:`pathlib.Path`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import cellnas
from cellnas.errors import CellnasError
from cellnas.search.config import SearchConfig
from cellnas.train import TrainConfig, resolve_config, train, train_seeds
from cellnas.train.loop import RESUME_OVERRIDES, config_from

# one step of one epoch of a network small enough that a run takes a fraction of a second
TINY = dict(dataset="digits", channels=4, layers=3, epochs=1, steps_per_epoch=1, progress=False, plots=False)


def _tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-step training run; the tests only read it (a resume of a finished run writes nothing)."""
    out = tmp_path_factory.mktemp("api") / "run"
    train("DARTS_V2", out=out, **TINY)
    return out


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    """A finished two-seed run started from a config object, with a copy of that object as it was before. Its values
    are ones validation rewrites (a numpy integer, a relative data folder: digits reads no files from it)."""
    cfg = _tiny_config(batch_size=np.int64(64), data_dir="data")
    before = copy.deepcopy(cfg)
    out = tmp_path_factory.mktemp("api") / "seeds"
    return train_seeds("DARTS_V2", [0, 1], cfg, out=out), cfg, before


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ------------------------------------------------------------------------------------ resume drops nothing


def test_resume_refuses_a_preset_naming_what_a_resume_can_change(finished_run):
    before = _listing(finished_run)
    with pytest.raises(CellnasError, match="preset cannot be given") as err:
        cellnas.train(resume=finished_run, preset="darts-cifar10")
    assert str(finished_run) in str(err.value) and ", ".join(RESUME_OVERRIDES) in str(err.value)
    assert _listing(finished_run) == before


@pytest.mark.parametrize("config", [TrainConfig(channels=32), {"channels": 32}], ids=["TrainConfig", "dict"])
def test_resume_refuses_a_config(finished_run, config):
    with pytest.raises(CellnasError, match="config cannot be given") as err:
        cellnas.train(resume=finished_run, config=config)
    assert "epochs" in str(err.value)


def test_resume_refuses_another_out_and_takes_its_own(finished_run, tmp_path):
    with pytest.raises(CellnasError, match="own directory"):
        train(resume=finished_run, out=tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    assert train(resume=finished_run, out=finished_run).run_dir == finished_run


def test_seeds_resume_refuses_a_preset_a_config_and_other_seeds(seeds_run):
    parent = seeds_run[0].run_dir
    with pytest.raises(CellnasError, match="preset cannot be given"):
        train_seeds(None, resume=parent, preset="darts-cifar10")
    with pytest.raises(CellnasError, match="config cannot be given"):
        train_seeds(None, [], TrainConfig(channels=32), resume=parent)
    with pytest.raises(CellnasError, match=r"own seeds \(0, 1\)"):
        train_seeds(None, [0, 1, 2], resume=parent)
    # no seeds, none or the run's own: the finished run read back
    for seeds in (None, [], range(2)):
        assert [r.config.seed for r in train_seeds(None, seeds, resume=parent).runs] == [0, 1]


# ------------------------------------------------------------------------------------ each result owns its config


def test_a_sweep_reusing_one_config_object_gives_each_result_its_own_config(tmp_path):
    cfg = _tiny_config(seed=np.int64(0))  # a numpy seed too: validation would convert it in place
    results = []
    for s in (0, 1):
        cfg.seed = s
        results.append(cellnas.train("DARTS_V2", cfg, out=tmp_path / f"s{s}"))
    assert [r.config.seed for r in results] == [0, 1]
    assert [r.summary()["seed"] for r in results] == [0, 1]
    assert [json.loads((tmp_path / f"s{s}" / "config.json").read_text())["seed"] for s in (0, 1)] == [0, 1]
    assert all(r.config is not cfg for r in results) and results[0].config is not results[1].config


def test_the_callers_config_is_not_filled_in_by_validation(tmp_path):
    cfg = _tiny_config(lr=np.float32(0.05), extra={"note": ["kept"]})
    before = copy.deepcopy(cfg)
    result = train("DARTS_V2", cfg, out=tmp_path / "run", data_dir=tmp_path / "data")
    assert cfg == before and cfg.data_dir is None and type(cfg.lr) is np.float32
    assert result.config is not cfg and result.config.extra is not cfg.extra
    assert result.config.data_dir == str(tmp_path / "data") and type(result.config.lr) is float


def test_train_seeds_leaves_the_callers_config_alone_and_gives_each_seed_its_own(seeds_run):
    result, cfg, before = seeds_run
    assert cfg == before and cfg.data_dir == "data" and type(cfg.batch_size) is np.int64
    assert {r.config.data_dir for r in result.runs} == {str(Path("data").absolute())}
    assert [r.config.seed for r in result.runs] == [0, 1]
    assert [r["seed"] for r in result.summary["runs"]] == [0, 1]
    assert result.runs[0].config is not result.runs[1].config


# ------------------------------------------------------------------------------------ wrong types


def test_a_search_config_is_refused_as_one(tmp_path):
    with pytest.raises(CellnasError, match="search config"):
        cellnas.train("DARTS_V2", SearchConfig(), out=tmp_path / "run")
    with pytest.raises(CellnasError, match="search config"):
        train("DARTS_V2", SearchConfig().to_dict(), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config", ["config.json", 3, ["epochs", 1]])
def test_a_config_of_another_type_is_refused_naming_what_is_taken(tmp_path, config):
    with pytest.raises(CellnasError, match="config must be a TrainConfig, a dict of its keys or None"):
        train("DARTS_V2", config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_dict_config_is_read_as_a_config_file(tmp_path):
    result = cellnas.train("DARTS_V2", dict(TINY), out=tmp_path / "run", seed=3)
    assert (result.config.channels, result.config.seed, result.config.preset) == (4, 3, "digits")
    # over the preset given, as --config FILE applies over --preset
    cfg = config_from({"epochs": 1}, "darts-cifar10", {})
    assert (cfg.epochs, cfg.channels, cfg.preset) == (1, 36, "darts-cifar10")
    with pytest.raises(CellnasError, match="unknown train config key"):
        train("DARTS_V2", {"epoch": 1}, out=tmp_path / "bad")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    with pytest.raises(CellnasError, match="names its own preset"):
        train("DARTS_V2", saved, preset="darts-cifar10", out=tmp_path / "bad")


def test_from_dict_refuses_what_is_not_a_dict():
    with pytest.raises(CellnasError, match="must be a dict of config keys"):
        TrainConfig.from_dict(["epochs", 1])


@pytest.mark.parametrize(
    "seeds, message",
    [
        (3, r"seeds=range\(3\) for 3 seeds, or seeds=\[3\]"),
        (np.int64(2), r"seeds=range\(2\)"),
        ("012", "sequence of distinct integers >= 0"),
        ([0, 0], "0 comes more than once"),
        ([0, -1], "-1 is below 0"),
        ([0, 1.5], "1.5 is not an integer"),
        ([True], "True is not an integer"),
        ([], "got none"),
        (None, "got none"),
    ],
)
def test_seeds_must_be_distinct_integers(tmp_path, seeds, message):
    with pytest.raises(CellnasError, match=message):
        train_seeds("DARTS_V2", seeds, out=tmp_path / "p", **TINY)
    assert not (tmp_path / "p").exists()


def test_out_and_resume_of_the_wrong_type_are_refused(tmp_path):
    with pytest.raises(CellnasError, match="out must be a directory"):
        train("DARTS_V2", out=3, **TINY)
    with pytest.raises(CellnasError, match="resume must be a directory"):
        train(resume=3)


# ------------------------------------------------------------------------------------ paths in configs


def test_data_dir_takes_a_path_and_is_stored_as_a_string(tmp_path):
    cfg = TrainConfig(data_dir=tmp_path / "data")
    cfg.validate()
    assert cfg.data_dir == str(tmp_path / "data")
    assert resolve_config(None, {"data_dir": Path("~/d")}).data_dir == str(Path("~/d").expanduser())
    search_cfg = SearchConfig(data_dir=tmp_path / "data")
    search_cfg.validate()
    assert search_cfg.data_dir == str(tmp_path / "data")
    with pytest.raises(CellnasError, match=r'"data_dir" in the config \(flag --data-dir\) must be a path .* or null'):
        TrainConfig(data_dir=3).validate()


def test_train_takes_a_path_data_dir(tmp_path, finished_run):
    result = train("DARTS_V2", out=tmp_path / "run", data_dir=tmp_path / "data", **TINY)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] == str(tmp_path / "data")
    assert result.config.data_dir == str(tmp_path / "data")
    # a resume takes one too (a finished run: read back, nothing written)
    assert train(resume=finished_run, data_dir=tmp_path / "data").run_dir == finished_run


def test_search_takes_a_path_data_dir(tmp_path):
    result = cellnas.search(out=tmp_path / "s", data_dir=tmp_path / "data", dataset="digits", epochs=1,
                            steps_per_epoch=1, channels=4, layers=3, progress=False, plots=False)  # fmt: skip
    assert json.loads((tmp_path / "s" / "config.json").read_text())["data_dir"] == str(tmp_path / "data")
    assert result.run_dir == tmp_path / "s"


# ------------------------------------------------------------------------------------ the docstring


def test_train_docstring_documents_config_preset_resume_overrides_returns_and_raises():
    doc = " ".join(train.__doc__.split())
    for phrase in ("``config``", "``preset``", "``resume``", "``overrides``", "RESUME_OVERRIDES", "Returns a",
                   "Raises", "never changed"):  # fmt: skip
        assert phrase in doc, phrase
