"""Fixes of the Wan et al. commands and the archive: Ctrl-C in batch evaluations, the default ranked population,
argument checks before any work, OI protocols that do not mix silently, export/import that keeps sources (and OI
vectors), the motif figure."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cellnas.analysis.sampling import sample
from cellnas.archive import Archive
from cellnas.cli import main
from cellnas.evaluators import BatchInterrupted, Evaluator, evaluate_batch
from cellnas.evaluators.executor import ProcessExecutor, SerialExecutor
from cellnas.evaluators.synthetic import SyntheticEvaluator
from cellnas.runs import RunInterrupted
from cellnas.zoo import get_genotype

SYN = ["--evaluator", "synthetic"]


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """An archive of 40 Random cells scored by the synthetic evaluator (source sample:none:seed0); each test copies
    it, since the studies add rows."""
    path = tmp_path_factory.mktemp("pop") / "a.sqlite"
    assert main(["archive", "evaluate", "--sample", "none", "-n", "40", *SYN, "--archive", str(path)]) == 0
    return path


@pytest.fixture
def db(population, tmp_path):
    import shutil

    path = tmp_path / "a.sqlite"
    shutil.copy(population, path)
    return path


# -- 1. Ctrl-C stops a batch ------------------------------------------------------------------------------------


class _StoppedAt(Evaluator):
    """Synthetic errors, except that the evaluation of ``stop`` raises what a training stopped by Ctrl-C raises."""

    name = "stopped"
    parallel = True

    def __init__(self, stop: str) -> None:
        self.protocol = "stopped"
        self.stop = stop

    def evaluate(self, genotype, seed=0):
        if genotype.content_hash() == self.stop:
            raise RunInterrupted("interrupted at step 3; continue with: cellnas train --resume /tmp/gone/run")
        return SyntheticEvaluator().evaluate(genotype, seed)


@pytest.mark.parametrize("where", ["serial", "process"])
def test_a_training_stopped_by_ctrl_c_stops_the_batch_and_is_no_failure(tmp_path, where):
    gs = sample("prim", 4, seed=3)
    archive = Archive(tmp_path / "a.sqlite")
    executor = SerialExecutor() if where == "serial" else ProcessExecutor(1)
    with pytest.raises(BatchInterrupted) as caught:
        evaluate_batch(_StoppedAt(gs[2].content_hash()), gs, archive=archive, executor=executor)
    executor.close()
    message = str(caught.value)
    assert "/tmp/gone" not in message and "2 new evaluations" in message and "2 of 4 not evaluated" in message
    assert archive.count("stopped") == 2 and archive.failures() == []  # what finished is kept; no failure
    assert isinstance(caught.value, RunInterrupted)  # the CLI exits with status 130 (143 after SIGTERM)


def _rows(path) -> int:
    if not os.path.exists(path):
        return 0
    try:
        with Archive(path, create=False, timeout=5) as a:
            return a.count()
    except Exception:  # noqa: BLE001 - not created yet
        return 0


@pytest.mark.parametrize(
    "argv, sig",
    [
        (["archive", "evaluate", "--sample", "prim", "-n", "6", "--workers", "1"], signal.SIGINT),
        (["analyze", "sampling", "-n", "3", "--constraints", "prim,skip", "--workers", "2", "-o", "out"],
         signal.SIGTERM),
    ],
    ids=["evaluate-workers1-SIGINT", "sampling-workers2-SIGTERM"],
)  # fmt: skip
def test_ctrl_c_or_sigterm_stops_a_proxy_batch_with_the_interrupted_status(tmp_path, argv, sig):
    """A real proxy batch, started with SIGINT ignored (a background job of a script, as the reviewer ran it)."""
    cmd = [sys.executable, "-m", "cellnas.cli", *argv, "--evaluator", "proxy", "--set", "epochs=1", "--set",
           "channels=4", "--archive", "a.sqlite"]  # fmt: skip
    env = {**os.environ, "CELLNAS_BUSY_CHECK": "0"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while _rows(tmp_path / "a.sqlite") < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the batch ended before it could be interrupted"
        os.killpg(proc.pid, sig)  # the whole process group, as Ctrl-C in a terminal (workers included)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + sig, err[-2000:]  # the CLI's statuses: 130 after Ctrl-C, 143 after SIGTERM
    assert "interrupted:" in err and "Traceback" not in err and "TrainInterrupted" not in err
    assert not [line for line in err.splitlines() if "resume" in line and "cellnas-proxy-" in line]  # a deleted dir
    a = Archive(tmp_path / "a.sqlite", create=False)
    assert 1 <= a.count() < 6 and a.failures() == []
    assert not (tmp_path / "out").exists()  # nothing written from partial groups


# -- 2. the default population of --top ----------------------------------------------------------------------


def test_top_ranks_the_same_population_each_run_not_the_rows_studies_derive(db, tmp_path, capsys):
    args = ["analyze", "importance", "--top", "0.1", *SYN, "--archive", str(db)]
    for out in ("x1", "x2"):
        assert main([*args, "-o", str(tmp_path / out)]) == 0
    first, second = (json.loads((tmp_path / out / "importance.json").read_text()) for out in ("x1", "x2"))
    assert first["n_architectures"] == second["n_architectures"] == 4  # round(0.1 * 40)
    assert [a["hash"] for a in first["architectures"]] == [a["hash"] for a in second["architectures"]]
    assert second["population"]["include_derived"] is False
    assert "population: 40 architectures under synthetic" in capsys.readouterr().err
    # the neighbours are there, and ranked when asked
    assert Archive(db).count() > 400
    assert main([*args, "--include-derived", "-o", str(tmp_path / "x3")]) == 0
    assert json.loads((tmp_path / "x3" / "importance.json").read_text())["n_architectures"] > 4
    # ablate --random and motifs draw from the same population
    assert main(["analyze", "ablate", "--random", "4", "--top", "0.1", "--kind", "reduce", *SYN,
                 "--archive", str(db), "-o", str(tmp_path / "ab")]) == 0  # fmt: skip
    drawn = {a["hash"] for a in json.loads((tmp_path / "ab" / "ablate.json").read_text())["architectures"]}
    assert drawn == {a["hash"] for a in first["architectures"]}
    assert main(["analyze", "motifs", "--top", "0.1", "--min-count", "1", "--max-nodes", "3", "--archive", str(db),
                 "-o", str(tmp_path / "m")]) == 0  # fmt: skip
    cells = json.loads((tmp_path / "m" / "motifs.json").read_text())["cells"]
    assert {c["hash"] for c in cells} == drawn


def test_the_library_can_leave_derived_rows_out_of_the_ranking(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    gs = sample("none", 6, seed=0)
    a.put_many([(g, "p", {"test_error": 0.5 + i / 100}) for i, g in enumerate(gs[:3])], source="sample:none")
    a.put_many([(g, "p", {"test_error": 0.1}) for g in gs[3:5]], source="analyze-importance")
    a.put(gs[5], "p", {"test_error": 0.2}, source="analyze-ablate:oi")
    assert len(a.ranked("p")) == 6
    assert [g for g, _, _ in a.top("p", n=2, include_derived=False)] == gs[:2]
    assert a.protocols(include_derived=False) == [("p", 3)]
    a.put(gs[0], "q", {"test_error": 0.1}, source="analyze-importance")
    with pytest.raises(Exception, match="outside the 1 rows derived.*--include-derived"):
        a.top("q", 0.5, include_derived=False)


# -- 3, 6, 7, 8, 9, 12: arguments refused before any work ---------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["analyze", "sampling", "--seed", "-1", "-n", "2", *SYN, "-o", "o"], "--seed must be >= 0 and < 2**32"),
        (["analyze", "sampling", "--eval-seed", str(2**32), "-n", "2", *SYN, "-o", "o"], "--eval-seed must be >= 0"),
        (["archive", "evaluate", "--sample", "prim", "-n", "2", "--seed", "-1", *SYN], "--seed must be >= 0"),
        (["archive", "evaluate", "DARTS_V2", "--eval-seed", "-1", *SYN], "--eval-seed must be >= 0"),
        (["analyze", "ablate", "--random", "2", "--seed", "-1", *SYN, "-o", "o"], "--seed must be >= 0"),
        (["analyze", "motifs", "--seed", "-1", "-o", "o"], "--seed must be >= 0"),
        (["archive", "fit-surrogate", "--seed", "-1", "--protocol", "synthetic", "-o", "s.joblib"], "--seed must be"),
        (["analyze", "importance", "DARTS_V2", "--threshold", "nan", *SYN, "-o", "o"],
         "--threshold must be a finite number"),
        (["analyze", "motifs", "--oi-protocol", "any", "--weight-thres", "nan", "-o", "o"],
         "--weight-thres must be a finite number"),
        (["analyze", "motifs", "--weight-thres", "0.01", "-o", "o"], "does not apply without --oi-protocol"),
        (["analyze", "sampling", "--constraints", "prim,prim", "-n", "2", *SYN, "-o", "o"],
         "prim given more than once"),
        (["analyze", "ablate", "DARTS_V2", "--top", "0.5", *SYN, "-o", "o"], "--top (how --random N draws"),
        (["analyze", "ablate", "DARTS_V2", "--seed", "3", *SYN, "-o", "o"], "--seed (how --random N draws"),
        (["analyze", "ablate", "DARTS_V2", "--kind", "reduce", "--max-ops", "3", *SYN, "-o", "o"],
         "--max-ops configures the op-disabling experiment"),
        (["analyze", "ablate", "DARTS_V2", "--kind", "reduce", "--oi-protocol", "any", *SYN, "-o", "o"],
         "--oi-protocol configures the op-disabling experiment"),
        (["analyze", "ablate", "--random", "2", "--top", "nan", *SYN, "-o", "o"], "--top must be a fraction"),
        (["analyze", "sampling", "--no-quirk", "--constraints", "prim", "-n", "2", *SYN, "-o", "o"],
         "--no-quirk changes the skip and primskip samplers only"),
        (["analyze", "importance", "DARTS_V2", "--rank-protocol", "synthetic", *SYN, "-o", "o"],
         "--rank-protocol chooses the --top population"),
        (["archive", "evaluate", "DARTS_V2", "-n", "5", *SYN], "-n (a sampling option) needs --sample"),
        (["archive", "evaluate", "DARTS_V2", "--surrogate", "s.joblib", *SYN], "--surrogate configures the surrogate"),
        (["archive", "evaluate", "DARTS_V2", "--protocol", "digits-short", *SYN], "--protocol configures the proxy"),
        (["analyze", "sampling", "-n", "2", "--workers", "0", *SYN, "-o", "o"], "--workers must be >= 1"),
        (["archive", "evaluate", "DARTS_V2", "--workers", "0", *SYN], "--workers must be >= 1"),
        (["analyze", "importance", "--top", "0.05", *SYN, "-o", "o"], "archive new.sqlite does not exist"),
        (["analyze", "ablate", "--random", "2", *SYN, "-o", "o"], "archive new.sqlite does not exist"),
        (["archive", "import", "nothere.csv"], "cannot import nothere.csv: it does not exist"),
    ],
)  # fmt: skip
def test_refused_arguments_give_one_line_and_create_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--archive", "new.sqlite"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # no archive, no output directory


def test_an_import_refused_whole_leaves_no_archive(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("genotype,test_error\nDARTS_V2,0.1\nNOT_A_CELL,0.2\n")
    assert main(["archive", "import", str(tmp_path / "bad.csv"), "--protocol", "p",
                 "--archive", str(tmp_path / "new.sqlite")]) == 2  # fmt: skip
    assert "line 3" in capsys.readouterr().err and not (tmp_path / "new.sqlite").exists()


def test_fit_surrogate_names_the_source_filter_that_left_nothing(db, tmp_path, capsys):
    assert main(["archive", "fit-surrogate", "--protocol", "synthetic", "--source", "nothing", "--archive", str(db),
                 "-o", str(tmp_path / "s.joblib")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "source starts with 'nothing' (--source)" in err and "sample:none:seed0 (40)" in err


# -- 4. OI vectors of one protocol, or a warning ---------------------------------------------------------------


def test_ablate_and_motifs_use_one_oi_protocol_and_say_which(db, tmp_path, capsys):
    top = [g for g, _, _ in Archive(db).top("synthetic", n=4, include_derived=False)]
    other = Archive(db)
    for g in top[:2]:  # another evaluator's OI vectors, more recent than none: 'any' used to take them
        other.put_importance(g, "surrogate:x", {p: (p % 5) / 1000 for p in range(16)}, 0.1)
    other.close()
    common = ["--random", "4", "--top", "0.1", "--kind", "disable", "--max-ops", "2", *SYN, "--archive", str(db)]
    assert main(["analyze", "ablate", *common, "-o", str(tmp_path / "a1")]) == 0
    doc = json.loads((tmp_path / "a1" / "ablate.json").read_text())
    assert doc["oi_protocol"] == "synthetic" and doc["oi_protocols"] == {"synthetic": 4}
    assert {a["oi_protocol"] for a in doc["architectures"]} == {"synthetic"}
    assert "warning" not in capsys.readouterr().err
    # 'any' prefers the evaluator's vectors, now stored for every cell: no mix
    assert main(["analyze", "ablate", *common, "--oi-protocol", "any", "-o", str(tmp_path / "a2")]) == 0
    assert json.loads((tmp_path / "a2" / "ablate.json").read_text())["oi_protocols"] == {"synthetic": 4}
    # a named protocol that only some cells have: the others are computed with the evaluator, and that is said
    assert main(["analyze", "ablate", *common, "--oi-protocol", "surrogate:x", "-o", str(tmp_path / "a3")]) == 0
    assert "OI vectors of 2 protocols: surrogate:x (2 cells), synthetic (2 cells)" in capsys.readouterr().err
    doc = json.loads((tmp_path / "a3" / "ablate.json").read_text())
    assert [a["oi_protocol"] for a in doc["architectures"]].count("surrogate:x") == 2
    # motifs: 'any' takes the ranking protocol's vector of each cell; a cell with only another's is warned about
    extra = Archive(db)
    fifth = extra.top("synthetic", n=5, include_derived=False)[4][0]
    extra.put_importance(fifth, "surrogate:x", {p: 0.002 for p in range(16)}, 0.1)
    extra.close()
    motifs = ["analyze", "motifs", "--min-count", "1", "--max-nodes", "3", "--archive", str(db), "--oi-protocol", "any"]
    assert main([*motifs, "--top", "0.1", "-o", str(tmp_path / "m1")]) == 0
    assert "warning" not in capsys.readouterr().err
    doc = json.loads((tmp_path / "m1" / "motifs.json").read_text())
    assert {c["oi_protocol"] for c in doc["cells"]} == {"synthetic"}
    assert doc["oi_prefilter"]["protocols"] == {"synthetic": 4}
    assert main([*motifs, "--top", "0.125", "-o", str(tmp_path / "m2")]) == 0
    assert "mixes vectors of 2 protocols: synthetic (4 cells), surrogate:x (1 cells)" in capsys.readouterr().err


def test_importance_prefer_keeps_the_preferred_protocol_over_a_later_one(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    g = get_genotype("DARTS_V2")
    a.put_importance(g, "a-mine", {0: 0.1}, None)
    a.put_importance(g, "z-later", {0: 0.2}, None)  # later (ties within a second: by protocol name)
    assert a.importance()[g.content_hash()][0] == "z-later"
    assert a.importance(prefer="a-mine")[g.content_hash()] == ("a-mine", {0: 0.1})
    assert a.importance(prefer="absent")[g.content_hash()][0] == "z-later"


# -- 5. export / import keep the source; OI vectors travel too --------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_export_then_import_keeps_each_rows_source(db, tmp_path, capsys, suffix):
    other = Archive(db)
    other.put(get_genotype("DARTS_V2"), "synthetic", {"test_error": 0.03}, source="analyze-sampling:seed4")
    other.close()
    out = tmp_path / f"x{suffix}"
    assert main(["archive", "export", str(out), "--archive", str(db)]) == 0
    copy = tmp_path / "b.sqlite"
    assert main(["archive", "import", str(out), "--archive", str(copy)]) == 0
    b = Archive(copy)
    assert dict(b.sources()) == {"sample:none:seed0": 40, "analyze-sampling:seed4": 1}
    assert len(b.records("synthetic", source="analyze-sampling")) == 1
    # a file without a source column still says where its rows came from
    (tmp_path / "mine.csv").write_text("genotype,test_error\nBANANAS,0.0239\n")
    b.import_csv(tmp_path / "mine.csv", protocol="paper")
    assert b.get(get_genotype("BANANAS"), "paper").source == "import:mine.csv"


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_oi_vectors_export_and_import(tmp_path, capsys, suffix):
    a = Archive(tmp_path / "a.sqlite")
    g, h = get_genotype("DARTS_V2"), get_genotype("BANANAS")
    a.put_importance(g, "synthetic", {p: p / 1000 for p in range(16)}, 0.03)
    a.put_importance(h, "surrogate:x", {0: -0.002, 15: 0.004}, None)
    a.close()
    out = tmp_path / f"oi{suffix}"
    assert main(["archive", "export", str(out), "--importance", "--archive", str(tmp_path / "a.sqlite")]) == 0
    assert "wrote 2 OI vectors" in capsys.readouterr().err
    assert main(["archive", "import", str(out), "--archive", str(tmp_path / "b.sqlite")]) == 2  # not evaluations
    assert "import it with --importance" in capsys.readouterr().err
    assert main(["archive", "import", str(out), "--importance", "--archive", str(tmp_path / "b.sqlite")]) == 0
    b = Archive(tmp_path / "b.sqlite")
    assert b.importance() == Archive(tmp_path / "a.sqlite").importance()
    assert b.importance_rows("synthetic")[0]["base_error"] == 0.03
    assert main(["archive", "import", str(out), "--importance", "--archive", str(tmp_path / "b.sqlite")]) == 0
    assert "0 OI vectors" in capsys.readouterr().out  # kept, not duplicated


def test_a_bad_oi_file_is_refused_whole(tmp_path):
    from cellnas.errors import FormatError

    (tmp_path / "oi.csv").write_text('genotype,protocol,oi\nDARTS_V2,p,"{""0"": 0.1}"\nDARTS_V2,q,"{""16"": 0.1}"\n')
    a = Archive(tmp_path / "a.sqlite")
    with pytest.raises(FormatError, match=r"line 3: oi entry '16'.*position in 0\.\.15"):
        a.import_importance(tmp_path / "oi.csv")
    assert a.importance() == {}


# -- 10. the importance table's headers -------------------------------------------------------------------------


def test_importance_table_headers_say_the_strict_threshold(tmp_path, capsys):
    assert main(["analyze", "importance", "DARTS_V2", *SYN, "--archive", str(tmp_path / "a.sqlite"),
                 "-o", str(tmp_path / "oi")]) == 0  # fmt: skip
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[3:6] == ["|OI|>=0.1%", "OI>+0.1%", "OI<-0.1%"]
    counts = json.loads((tmp_path / "oi" / "importance.json").read_text())["counts"]
    assert counts["positive"] == "OI > +threshold (strict)" and counts["negative"] == "OI < -threshold (strict)"


# -- 11. the motif figure -----------------------------------------------------------------------------------------


def _panel_geometry(ax):
    """Node circles, edge paths and edge-label boxes of one motif panel, in display pixels."""
    from matplotlib.patches import Circle, FancyArrowPatch

    circles = [(ax.transData.transform(p.center), ax.transData.transform((p.center[0] + p.radius, p.center[1]))[0]
                - ax.transData.transform(p.center)[0]) for p in ax.patches if isinstance(p, Circle)]  # fmt: skip
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    boxes = [t.get_bbox_patch() for t in ax.texts if t.get_bbox_patch() is not None]
    labels = [b.get_transform().transform(b.get_path().vertices) for b in boxes]  # turned with the text
    return circles, arrows, labels


def _overlap(a: np.ndarray, b: np.ndarray, tolerance: float = 1.0) -> bool:
    """Whether two convex polygons (vertices in display pixels) overlap by more than ``tolerance`` pixels
    (separating axis test)."""
    for poly in (a, b):
        for p, q in zip(poly, np.roll(poly, -1, axis=0)):
            edge = q - p
            if not np.any(edge):
                continue
            axis = np.array([-edge[1], edge[0]]) / np.linalg.norm(edge)
            pa, pb = a @ axis, b @ axis
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= tolerance:
                return False
    return True


def test_motif_panels_keep_edges_off_other_nodes_and_labels_apart(tmp_path):
    from cellnas.analysis.motifs import cell_graph, mine, rank
    from cellnas.plots.wan import plot_motifs

    graphs = [cell_graph(g) for g in sample("none", 12, seed=3)]
    big = sorted(mine(graphs, min_count=1, min_nodes=4, max_nodes=5, shapes="connected"),
                 key=lambda m: (-m.n_edges, m.key))[:40]  # fmt: skip
    ranked = rank(big, graphs[:4])
    motifs = [m for m in ranked if m.ref_incidence == 0][:3] + [m for m in ranked if m.ref_incidence][:3]
    assert len(motifs) == 6 and min(m.n_edges for m in motifs) >= 4
    fig = plot_motifs(motifs, None)
    fig.canvas.draw()
    for ax, m in zip(fig.axes, motifs):
        title = ax.get_title()
        assert "inf" not in title and ("not in ref" in title) == (m.ref_incidence == 0)
        circles, arrows, labels = _panel_geometry(ax)
        assert len(circles) == m.n_nodes and len(arrows) == len(labels) == m.n_edges
        for arrow in arrows:
            points = arrow.get_path().vertices  # display pixels, the curve clipped at its two nodes
            for centre, r in circles:
                inside = np.linalg.norm(points - centre, axis=1) < 0.9 * r
                assert not inside.any(), f"{title}: an edge runs through a node"
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                assert not _overlap(a, b), f"{title}: two edge labels overlap"
    import matplotlib.pyplot as plt

    plt.close(fig)
