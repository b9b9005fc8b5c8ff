"""The Python API as a user calls it: submodules reachable from ``import cellnas``, analysis functions given what a
user naturally passes (a zoo name, a whole genotype, a string seed, a huge sample size), and ``Archive.put`` refusing
the results that ``cellnas archive add`` refuses, with the same messages. Each wrong argument is a
:class:`~cellnas.errors.CellnasError` naming the argument and the valid values, never an AttributeError or
ValueError from deep inside."""

import math
import subprocess
import sys
import time

import numpy as np
import pytest

import cellnas
from cellnas.analysis import sampling, variants
from cellnas.analysis.topology import cell_depth, cell_width, topology
from cellnas.archive import Archive, check_result
from cellnas.errors import CellnasError, check_int, check_seed
from cellnas.formats import to_darts_text, to_json, to_nb301
from cellnas.zoo import get_genotype

DARTS_V2 = get_genotype("DARTS_V2")


def _run(code: str) -> str:
    """stdout of ``code`` run in a fresh interpreter (nothing imported by this test process)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- 1. submodules as attributes of the package ------------------------------------------------------------------


def test_the_readme_cpu_snippet_works_after_import_cellnas_alone_without_torch():
    out = _run("import sys, cellnas\n"
               "print('torch' in sys.modules)\n"
               "f = cellnas.cpu.keep_freed_memory\n"
               "print(callable(f), 'torch' in sys.modules, sys.modules['cellnas.cpu'] is cellnas.cpu)")  # fmt: skip
    assert out.splitlines() == ["False", "True False True"]


def test_subpackages_and_the_callable_packages_are_reachable_lazily():
    out = _run("import sys, cellnas\n"
               "print(cellnas.analysis.__name__, cellnas.zoo.get_genotype('DARTS_V2').k)\n"
               "print(callable(cellnas.search), callable(cellnas.train), cellnas.Genotype.__name__)\n"
               "print('torch' in sys.modules)")  # fmt: skip
    assert out.splitlines() == ["cellnas.analysis 2", "True True Genotype", "False"]


def test_an_unknown_attribute_is_an_attribute_error_naming_the_submodules():
    assert not hasattr(cellnas, "no_such_thing")
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'.*submodules.*archive.*cpu.*zoo"):
        cellnas.no_such_thing  # noqa: B018
    assert {"cpu", "zoo", "analysis", "search"} <= set(dir(cellnas))


# -- 2. topology ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["DARTS_V2", "darts_v2", to_darts_text(DARTS_V2), to_json(DARTS_V2), to_nb301(DARTS_V2)],
    ids=["zoo", "alias-case", "darts-text", "json", "nb301"],
)
def test_topology_accepts_a_zoo_name_genotype_text_or_a_parsed_document(given):
    assert topology(given) == topology(DARTS_V2) == {"normal": {"width": 3.5, "depth": 3},
                                                     "reduce": {"width": 2.5, "depth": 3}}  # fmt: skip


def test_topology_refuses_a_single_cell_or_another_object_by_name():
    with pytest.raises(CellnasError, match=r"whole genotype.*one Cell.*cell_width\(cell\)"):
        topology(DARTS_V2.normal)
    with pytest.raises(CellnasError, match="needs a Genotype, a zoo name.*got int"):
        topology(3)
    with pytest.raises(CellnasError, match="neither a zoo genotype"):
        topology("NO_SUCH_CELL")


@pytest.mark.parametrize("measure", [cell_width, cell_depth])
def test_cell_measures_given_a_whole_genotype_name_its_two_cells(measure):
    with pytest.raises(CellnasError, match=r"whole Genotype.*genotype\.normal or genotype\.reduce.*topology"):
        measure(DARTS_V2)
    with pytest.raises(CellnasError, match=rf"{measure.__name__}\(\) needs a Cell.*got str"):
        measure("DARTS_V2")
    assert (cell_width(DARTS_V2.normal), cell_depth(DARTS_V2.normal)) == (3.5, 3)


# -- 3. sampling ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,match", [(-1, "n .*must be an integer >= 1, got -1"),
                                     (0, "n .*must be an integer >= 1, got 0"),
                                     (2.5, "n .*must be an integer >= 1, got 2.5"),
                                     ("3", "n .*must be an integer >= 1, got '3'")])  # fmt: skip
def test_sample_refuses_a_bad_number_of_samples(n, match):
    with pytest.raises(CellnasError, match=match):
        sampling.sample("primskip", n, 0)


def test_sample_refuses_a_huge_set_at_once_naming_the_limit():
    t0 = time.perf_counter()
    with pytest.raises(CellnasError, match=rf"<= {sampling.MAX_SAMPLES}, got 1000000000.*memory"):
        sampling.sample("none", 10**9, 0)
    assert time.perf_counter() - t0 < 1  # refused before drawing anything
    assert len(sampling.sample("none", np.int64(2), 0)) == 2  # NumPy integers are integers


@pytest.mark.parametrize("kwargs,match", [
    (dict(constraint="resnet"), "unknown constraint 'resnet'; valid choices: none, prim, primskip, skip"),
    (dict(seed=-1), "seed must be >= 0 and < 2\\*\\*32, got -1"),
    (dict(seed="a"), "seed must be an integer >= 0 and < 2\\*\\*32, got 'a'"),
    (dict(seed=2**32), "seed must be >= 0 and < 2\\*\\*32"),
    (dict(n_nodes=1), "n_nodes .*'primskip'.* must be an integer >= 2, got 1"),
    (dict(n_nodes="4"), "n_nodes .*must be an integer"),
])  # fmt: skip
def test_sample_refuses_bad_arguments_naming_them(kwargs, match):
    args = dict(constraint="primskip", n=1, seed=0) | kwargs
    with pytest.raises(CellnasError, match=match):
        sampling.sample(**args)


def test_edit_distance_and_satisfies_accept_a_zoo_name_and_one_cell_name():
    assert sampling.edit_distance("DARTS_V2", "primskip", cells="normal")[0] == 1
    assert sampling.satisfies(sampling.sample("prim", 1, 0)[0], "prim", cells="reduce")
    with pytest.raises(CellnasError, match="unknown cell type 'x'; valid choices: normal, reduce"):
        sampling.satisfies(DARTS_V2, "prim", cells=["x"])
    with pytest.raises(CellnasError, match=r"edit_distance\(\) needs a Genotype"):
        sampling.edit_distance(None, "prim")


# -- 4. variants and the shared argument checks -------------------------------------------------------------------


@pytest.mark.parametrize("function", [variants.random_ops, variants.random_conn])
@pytest.mark.parametrize("seed", ["a", 1.5, None, True])
def test_random_variants_refuse_a_seed_that_is_not_an_integer(function, seed):
    with pytest.raises(CellnasError, match=r"^seed must be an integer >= 0 and < 2\*\*32, got .*\(type "):
        function(DARTS_V2, seed)


def test_random_variants_accept_a_zoo_name_and_numpy_seeds():
    assert variants.random_ops("DARTS_V2", np.int64(3)) == variants.random_ops(DARTS_V2, 3)
    assert variants.random_conn("DARTS_V2", 1) == variants.random_conn(DARTS_V2, 1)
    assert variants.widest("DARTS_V2") == variants.widest(DARTS_V2)
    with pytest.raises(CellnasError, match=r"random_ops\(\) takes a whole genotype.*one Cell"):
        variants.random_ops(DARTS_V2.normal, 1)


@pytest.mark.parametrize("call,match", [
    (lambda: variants.wirings_of_width("4"), "n_nodes .*must be an integer >= 1, got '4'"),
    (lambda: variants.possible_widths(4, k=0), "k .*must be an integer >= 1, got 0"),
    (lambda: variants.width_family(DARTS_V2, widths=("a",)), "widths: 'a' is not a number"),
    (lambda: variants.width_family(DARTS_V2, widths="2.5"), "widths must be numbers"),
    (lambda: variants.width_family(DARTS_V2, per_bin="3"), "--per-bin .*must be an integer, got .3."),
    (lambda: variants.width_family(DARTS_V2, max_tries=None), "--max-tries .*must be an integer, got None"),
    (lambda: variants.width_family(DARTS_V2, seed="0"), "--seed must be an integer"),
    (lambda: variants.widest(None), r"widest\(\) needs a Genotype"),
])  # fmt: skip
def test_variant_functions_name_their_bad_argument(call, match):
    with pytest.raises(CellnasError, match=match):
        call()


def test_width_family_takes_one_width_alone():
    assert [v.width for v in variants.width_family(DARTS_V2, widths=3.0, per_bin=2)] == [3.0, 3.0]


def test_the_shared_checks_raise_cellnas_errors_naming_the_argument():
    assert check_seed(np.uint32(7), "seed") == 7 and check_int(np.int16(3), "n", 1) == 3
    with pytest.raises(CellnasError, match=r"^--seed must be an integer >= 0 and < 2\*\*32, got 'a' \(type str\)$"):
        check_seed("a")
    with pytest.raises(CellnasError, match=r"^n \(samples\) must be an integer >= 1 and <= 5, got 6$"):
        check_int(6, "n", 1, 5, why="samples")


# -- 5. Archive.put checks what `archive add` checks ---------------------------------------------------------------


@pytest.fixture
def archive(tmp_path):
    with Archive(tmp_path / "a.sqlite") as a:
        yield a


@pytest.mark.parametrize("metrics,seed,match", [
    ({"test_error": math.nan}, 0, "test_error = nan is not an error fraction in \\[0, 1\\]"),
    ({"test_error": 2.89}, 0, "test_error = 2.89 is not an error fraction in \\[0, 1\\] \\(a percentage"),
    ({"val_error": -0.1}, 0, "val_error = -0.1 is not an error fraction"),
    ({"params": -3}, 0, "params = -3 must be a finite number >= 0"),
    ({"seconds": math.inf}, 0, "seconds = inf must be a finite number >= 0"),
    ({"test_error": "low"}, 0, "test_error = 'low' is not a number"),
    ({"test_error": 0.1}, -1, "seed -1 is negative"),
    ({"test_error": 0.1}, "a", "seed must be an integer"),
    ({}, 0, "no metric"),
    ([0.03], 0, "metrics must be a dict \\{name: value\\}.*got list"),
])  # fmt: skip
def test_put_refuses_what_archive_add_refuses_and_writes_nothing(archive, metrics, seed, match):
    with pytest.raises(CellnasError, match=match) as caught:
        archive.put(DARTS_V2, "p", metrics, seed=seed)
    with pytest.raises(CellnasError) as by_hand:
        check_result(metrics, seed)
    assert str(caught.value) == str(by_hand.value)  # the check of `archive add` and `import`
    assert archive.count() == 0


def test_put_gives_the_message_of_the_command_line(archive, capsys, tmp_path):
    from cellnas.cli import main

    db = tmp_path / "cli.sqlite"
    assert main(["archive", "add", "DARTS_V2", "--protocol", "p", "--test-error", "2.89", "--archive", str(db)]) == 2
    err = capsys.readouterr().err
    with pytest.raises(CellnasError) as caught:
        archive.put(DARTS_V2, "p", {"test_error": 2.89})
    assert str(caught.value) in err


def test_put_many_keeps_evaluator_values_but_refuses_a_malformed_item(archive):
    # a surrogate fitted on another metric reports it as test_error: evaluator results are stored as given
    assert archive.put_many([(DARTS_V2, "surrogate", {"test_error": 1.5})]) == 1
    assert archive.get(DARTS_V2, "surrogate").test_error == 1.5
    with pytest.raises(CellnasError, match="test_error = 1.5 is not an error fraction"):
        archive.put_many([(DARTS_V2, "q", {"test_error": 1.5})], check=True)
    with pytest.raises(CellnasError, match="metrics must be a dict"):
        archive.put_many([(DARTS_V2, "q", [0.03])])
    with pytest.raises(CellnasError, match=r"item 0 must be \(genotype, protocol, metrics\)"):
        archive.put_many([(DARTS_V2, "q")])
    assert archive.count() == 1
    assert archive.put(DARTS_V2, "p", {"test_error": 0.0276, "val_error": None, "top5": math.nan})
    assert archive.get(DARTS_V2, "p").metrics()["test_error"] == 0.0276
