"""Evaluators, their registry, the batch runner (resume, per-architecture failures, workers) and executors."""

import os
import sys

import numpy as np
import pytest

from cellnas.analysis.sampling import sample
from cellnas.archive import Archive
from cellnas.errors import CellnasError, DataError, FormatError
from cellnas.evaluators import BatchInterrupted, Evaluator, create_evaluator, evaluate_batch, list_evaluators
from cellnas.evaluators.executor import ProcessExecutor, SerialExecutor
from cellnas.evaluators.nb301 import NB301Evaluator
from cellnas.evaluators.surrogate import SurrogateEvaluator, SurrogateModel, encode, feature_names, fit_surrogate
from cellnas.evaluators.synthetic import SyntheticEvaluator
from cellnas.genotype import Genotype
from cellnas.zoo import get_genotype


class Counting(Evaluator):
    """Synthetic errors; counts calls; raises KeyboardInterrupt after ``stop_after`` calls; fails on ``bad``."""

    name = "counting"
    parallel = True  # one result at a time, committed as it arrives

    def __init__(self, stop_after=None, bad=()):
        self.protocol = "counting"
        self.calls = 0
        self.stop_after = stop_after
        self.bad = set(bad)
        self.inner = SyntheticEvaluator()

    def evaluate(self, genotype, seed=0):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        if genotype.content_hash() in self.bad:
            raise RuntimeError("diverged")
        return self.inner.evaluate(genotype, seed)


def test_registry_lists_evaluators_and_rejects_unknown_names():
    assert {"proxy", "surrogate", "nb301", "synthetic"} <= set(list_evaluators())
    with pytest.raises(CellnasError, match="unknown evaluator 'xgb'.*nb301, proxy, surrogate, synthetic"):
        create_evaluator("xgb")
    with pytest.raises(CellnasError, match="digits-tiny"):
        create_evaluator("proxy", protocol="cifar-forever")


def test_synthetic_evaluator_is_deterministic_and_plants_the_residual_finding():
    ev = create_evaluator("synthetic")
    g = get_genotype("DARTS_V2")
    assert ev.evaluate(g) == ev.evaluate(g) and ev.evaluate(g, 1) != ev.evaluate(g, 0)
    no_residual = Genotype.from_darts([("sep_conv_3x3", 0), ("sep_conv_3x3", 1)] * 4, [2, 3, 4, 5],
                                      g.reduce.pairs, [2, 3, 4, 5])  # fmt: skip
    with_residual = Genotype.from_darts([("skip_connect", 0)] + [("sep_conv_3x3", 1)] * 7, [2, 3, 4, 5],
                                        g.reduce.pairs, [2, 3, 4, 5])  # fmt: skip
    assert ev.error(with_residual) < ev.error(no_residual)


def test_batch_skips_what_the_archive_has_and_resumes_an_interrupted_batch(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    gs = sample("none", 12, seed=5)
    first = Counting(stop_after=5)
    with pytest.raises(BatchInterrupted, match="interrupted: 5 new evaluations with counting committed to .*, 7 of "
                                               "12 not evaluated"):  # fmt: skip
        evaluate_batch(first, gs, archive=archive, executor=SerialExecutor())
    assert archive.count("counting") == 5  # each result was committed as it arrived
    assert archive.failures() == []  # the interrupted evaluation is no failure
    second = Counting()
    report = evaluate_batch(second, gs + gs[:3], archive=archive, executor=SerialExecutor())
    assert second.calls == 7 and len(report.new) == 7 and len(report.reused) == 5
    assert len(report.results) == 12 and archive.count("counting") == 12
    third = Counting()
    assert evaluate_batch(third, gs, archive=archive).reused and third.calls == 0
    # another seed is another key
    assert len(evaluate_batch(Counting(), gs[:2], archive=archive, seed=1, executor=SerialExecutor()).new) == 2


def test_a_failing_architecture_is_reported_and_does_not_stop_the_batch(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    gs = sample("prim", 6, seed=0)
    ev = Counting(bad={gs[2].content_hash()})
    report = evaluate_batch(ev, gs, archive=archive, executor=SerialExecutor())
    assert report.failed == {gs[2].content_hash(): "RuntimeError: diverged"}
    assert len(report.new) == 5 and archive.count("counting") == 5
    assert archive.failures("counting")[0]["hash"] == gs[2].content_hash()
    retry = Counting()
    assert evaluate_batch(retry, gs, archive=archive, executor=SerialExecutor()).new == [gs[2].content_hash()]
    assert archive.failures() == []


def test_cheap_evaluators_run_vectorised_and_find_culprits_one_by_one(tmp_path):
    class Fussy(SyntheticEvaluator):
        def evaluate_many(self, genotypes, seed=0):
            if any(g.normal.pairs[0][0] == "max_pool_3x3" for g in genotypes):
                raise ValueError("pool first")
            return super().evaluate_many(genotypes, seed)

        def evaluate(self, genotype, seed=0):
            if genotype.normal.pairs[0][0] == "max_pool_3x3":
                raise ValueError("pool first")
            return super().evaluate(genotype, seed)

    gs = sample("none", 40, seed=2)
    bad = [g for g in gs if g.normal.pairs[0][0] == "max_pool_3x3"]
    assert bad
    report = evaluate_batch(Fussy(), gs, archive=Archive(tmp_path / "a.sqlite"))
    assert len(report.failed) == len(bad) and len(report.new) == 40 - len(bad)


def _square(x):
    if x == 3:
        raise ValueError("three")
    if x == 5:
        os._exit(1)  # a worker dying mid-task
    return x * x


def test_process_executor_reports_errors_and_dead_workers_per_task():
    with ProcessExecutor(2) as ex:
        done = {d.index: d for d in ex.map_unordered(_square, [0, 1, 2, 3, 4])}
        assert {i: d.value for i, d in done.items() if d.ok} == {0: 0, 1: 1, 2: 4, 4: 16}
        assert done[3].error == "ValueError: three"
        died = {d.item: d for d in ex.map_unordered(_square, [5, 6, 7, 8])}
    assert "worker process died" in died[5].error
    # the tasks lost with the broken pool ran again (one at a time): only the one that kills its worker fails
    assert {x: d.value for x, d in died.items() if d.ok} == {6: 36, 7: 49, 8: 64}
    with pytest.raises(ValueError, match="fork"):
        ProcessExecutor(2, context="fork")


def test_proxy_evaluator_trains_in_two_workers_and_leaves_no_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ev = create_evaluator("proxy", protocol="digits-tiny", epochs=1, channels=4, steps_per_epoch=2,
                          eval_batch_size=512, device="cpu")  # fmt: skip
    assert ev.protocol == "proxy:digits-tiny[channels=4,epochs=1,eval_batch_size=512,steps_per_epoch=2]"
    assert ev.train_overrides["plots"] is False  # no curves.png for a run directory that is deleted
    kept = create_evaluator("proxy", protocol="digits-tiny", keep_runs=tmp_path / "runs")
    assert kept.train_overrides["plots"] is True and kept.protocol == "proxy:digits-tiny"
    archive = Archive(tmp_path / "a.sqlite")
    gs = [get_genotype("DARTS_V2"), sample("primskip", 1, seed=0)[0]]
    report = evaluate_batch(ev, gs, archive=archive, workers=2)
    assert not report.failed and len(report.new) == 2
    for g in gs:
        rec = archive.get(g, ev.protocol)
        assert 0.0 <= rec.test_error <= 1.0 and rec.params > 0 and rec.extra["epochs"] == 1
        assert rec.config["train"]["channels"] == 4 and rec.config["protocol"] == "digits-tiny"
    assert sorted(os.listdir(tmp_path)) == ["a.sqlite", "a.sqlite-shm", "a.sqlite-wal"] or sorted(
        os.listdir(tmp_path)
    ) == ["a.sqlite"]


def test_surrogate_ranks_held_out_cells_and_round_trips_through_its_file(tmp_path):
    truth = SyntheticEvaluator(noise=0.002)
    gs = sample("none", 70, seed=0) + sample("primskip", 30, seed=0)
    model = fit_surrogate([(g, truth.error(g)) for g in gs], "synthetic", seed=0)
    assert model.n_test == 20 and model.kendall_tau > 0.5 and model.rmse < 0.02
    path = model.save(tmp_path / "s.joblib")
    ev = create_evaluator("surrogate", path=path)
    assert ev.protocol == model.protocol == fit_surrogate([(g, truth.error(g)) for g in gs], "synthetic").protocol
    unseen = sample("skip", 5, seed=9)
    np.testing.assert_allclose([ev.error(g) for g in unseen], model.predict(unseen))
    assert encode(unseen).shape == (5, len(feature_names()))
    with pytest.raises(DataError, match="at least 10"):
        fit_surrogate([(g, 0.1) for g in gs[:5]], "x")
    (tmp_path / "junk.joblib").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable surrogate"):
        SurrogateModel.load(tmp_path / "junk.joblib")
    with pytest.raises(CellnasError, match="model file"):
        SurrogateEvaluator()


def test_surrogate_encoding_is_the_nb301_edge_one_hot():
    g = get_genotype("DARTS_V2")
    names = feature_names(features="edges")
    row = encode([g], features="edges")[0]
    on = {names[i] for i in np.flatnonzero(row)}
    # normal node 5 (offset 9) reads skip_connect(0) and dil_conv_3x3(2): slots 9 and 11
    assert {"edge_normal_9=skip_connect", "edge_normal_11=dil_conv_3x3", "edge_reduce_0=max_pool_3x3"} <= on
    assert row.sum() == 16


class StandIn:
    """Mimics nasbench301's ensemble: predict(config, representation, with_noise) -> accuracy in %."""

    def __init__(self):
        self.seen = []

    def predict(self, config, representation, with_noise):
        self.seen.append((config, representation, with_noise))
        return 94.0 + 0.1 * sum(op == "sep_conv_3x3" for op, _ in config.normal)


def test_nb301_adapter_converts_refuses_and_maps_accuracy_to_error():
    stand_in = StandIn()
    ev = NB301Evaluator(predictor=stand_in, name="standin")
    g = get_genotype("DARTS_V2")
    m = ev.evaluate(g)
    assert m["test_error"] == pytest.approx(1 - 94.5 / 100) and m["nb301_accuracy"] == pytest.approx(94.5)
    config, representation, with_noise = stand_in.seen[0]
    assert representation == "genotype" and with_noise is False
    assert config.normal == list(g.normal.pairs) and config.reduce_concat == [2, 3, 4, 5]
    assert ev.protocol == "nb301:standin"
    dup = Genotype.from_darts([("sep_conv_3x3", 0), ("sep_conv_3x3", 0)] * 4, [2, 3, 4, 5], g.reduce.pairs,
                              [2, 3, 4, 5])  # fmt: skip
    with pytest.raises(FormatError, match="duplicate inputs"):
        ev.evaluate(dup)
    with pytest.raises(FormatError, match="no 'none'"):
        ev.evaluate(get_genotype("BANANAS"))  # its reduction cell has a none edge


def test_nb301_missing_package_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nasbench301", None)  # import fails
    with pytest.raises(CellnasError, match=r"pip install nasbench301.*nb_models_0\.9/xgb_v0\.9"):
        create_evaluator("nb301", model_dir=tmp_path)
    with pytest.raises(CellnasError, match="pip install nasbench301"):
        create_evaluator("nb301")


def test_surrogate_refuses_an_empty_training_split_and_a_directory(tmp_path):
    truth = SyntheticEvaluator()
    data = [(g, truth.error(g)) for g in sample("none", 40, seed=0)]
    with pytest.raises(DataError, match="holds out 40 and leaves 0 to fit on"):
        fit_surrogate(data, "synthetic", test_fraction=0.99)
    model = fit_surrogate(data, "synthetic", test_fraction=0)
    with pytest.raises(CellnasError, match="is a directory"):
        model.save(tmp_path)


def test_a_constant_surrogate_is_flagged_without_raw_warnings():
    import warnings

    truth = SyntheticEvaluator()
    gs = sample("none", 20, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning would fail here
        model = fit_surrogate([(g, truth.error(g)) for g in gs], "synthetic", model="hgb", test_fraction=0.25)
    assert model.n_test == 5 and model.kendall_tau is None and model.spearman is None and model.rmse is not None
    assert model.is_constant(gs)
    assert not fit_surrogate([(g, truth.error(g)) for g in gs], "synthetic", test_fraction=0.25).is_constant(gs)


def test_surrogate_check_refuses_cells_it_cannot_encode():
    truth = SyntheticEvaluator()
    model = fit_surrogate([(g, truth.error(g)) for g in sample("none", 12, seed=0)], "synthetic", test_fraction=0)
    ev = SurrogateEvaluator(model=model)
    ev.check(get_genotype("DARTS_V2"))
    with pytest.raises(CellnasError, match="5 intermediate nodes; this surrogate encodes 4"):
        ev.check(get_genotype("NASNet"))
    SyntheticEvaluator().check(get_genotype("NASNet"))  # the default accepts everything


def test_batch_refuses_a_negative_seed_and_reports_when_everything_failed(tmp_path):
    gs = sample("none", 3, seed=0)
    with pytest.raises(CellnasError, match=r"--eval-seed\) must be >= 0 and < 2\*\*32, got -1"):
        evaluate_batch(SyntheticEvaluator(), gs, seed=-1)
    with pytest.raises(CellnasError, match="got 4294967296"):
        evaluate_batch(SyntheticEvaluator(), gs, seed=2**32)
    ev = Counting(bad={g.content_hash() for g in gs})
    report = evaluate_batch(ev, gs)
    assert report.all_failed
    with pytest.raises(CellnasError, match="all 3 evaluations with counting failed.*diverged"):
        report.raise_if_all_failed()
    ev = Counting(bad={gs[0].content_hash()})
    report = evaluate_batch(ev, gs)
    assert not report.all_failed
    report.raise_if_all_failed()


def test_proxy_set_values_of_the_wrong_type_are_one_line_errors():
    with pytest.raises(CellnasError, match="\"epochs\" .* must be an integer, got 'abc'"):
        create_evaluator("proxy", epochs="abc").config()


def test_a_file_that_is_not_a_surrogate_is_named_for_what_it_is(tmp_path):
    import sqlite3

    import joblib

    (tmp_path / "v2.json").write_text('{"format": "cellnas.genotype"}\n')
    with pytest.raises(DataError, match=r"v2\.json is JSON, not a surrogate written by `cellnas archive "
                                        r"fit-surrogate` \(a joblib file\)"):  # fmt: skip
        SurrogateModel.load(tmp_path / "v2.json")
    sqlite3.connect(tmp_path / "a.sqlite").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(DataError, match=r"a\.sqlite is an SQLite file .*not a surrogate"):
        SurrogateModel.load(tmp_path / "a.sqlite")
    joblib.dump([1, 2], tmp_path / "other.joblib")
    with pytest.raises(DataError, match=r"other\.joblib is a joblib file holding a list, not a surrogate"):
        SurrogateModel.load(tmp_path / "other.joblib")


def test_batch_evaluates_two_listings_of_one_architecture_once_and_reuses_either(tmp_path):
    g = get_genotype("DARTS_V2")
    pairs = g.normal.pairs
    other = Genotype.from_darts(pairs[:6] + [pairs[7], pairs[6]], g.normal.concat, g.reduce.pairs, g.reduce.concat)
    archive = Archive(tmp_path / "a.sqlite")
    counting = Counting()
    report = evaluate_batch(counting, [g, other], archive=archive, executor=SerialExecutor())
    assert counting.calls == 1 and archive.count("counting") == 1
    assert report.results[g.content_hash()] == report.results[other.content_hash()]
    again = Counting()
    assert evaluate_batch(again, [other], archive=archive, executor=SerialExecutor()).reused == [other.content_hash()]
    assert again.calls == 0
