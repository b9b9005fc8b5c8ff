"""Error paths of the command line: damaged or unfinished run directories, Ctrl-C during start-up, refused flag
combinations and failed starts that must leave nothing behind. Each is one line on stderr, never a traceback."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from cellnas.cli import main
from cellnas.search import search

TINY = dict(all_normal=True, nodes=2, channels=4, layers=2, batch_size=16, steps_per_epoch=1, progress=False,
            plots=False)  # fmt: skip


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A finished one-epoch search with its wiring records (alphas_history.npz and wiring.npz)."""
    out = tmp_path_factory.mktemp("wiring") / "run"
    search(out=out, record_wiring=True, epochs=1, **TINY)
    assert (out / "alphas_history.npz").is_file() and (out / "wiring.npz").is_file()
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name", ["alphas_history.npz", "wiring.npz"])
@pytest.mark.parametrize("keep", [3000, 0, 40])
def test_a_truncated_record_is_named_as_damaged(search_run, tmp_path, capsys, name, keep):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[:min(keep, len(data) // 2)])
    assert main(["analyze", "wiring", str(run)]) == 2
    err = _one_line_error(capsys)
    assert str(run / name) in err and "damaged" in err and f"cellnas search --resume {run}" in err
    assert not (run / "wiring").exists()  # nothing written


def test_a_search_interrupted_in_its_first_epoch_says_to_resume_it(search_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    (run / "alphas_history.npz").unlink()
    assert main(["analyze", "wiring", str(run)]) == 2
    err = _one_line_error(capsys)
    assert "not finished an epoch" in err and f"cellnas search --resume {run}" in err
    assert "is not a search run directory" not in err
    other = tmp_path / "other"
    other.mkdir()
    assert main(["analyze", "wiring", str(other)]) == 2
    assert "is not a search run directory (no alphas_history.npz)" in _one_line_error(capsys)


def test_ctrl_c_while_parsing_is_one_line_and_status_130(monkeypatch, capsys):
    import cellnas.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cellnas.cli, "build_parser", interrupted)
    assert main(["-v", "search", "--epochs", "1"]) == 130
    assert capsys.readouterr().err == "cellnas search: interrupted\n"


def test_ctrl_c_during_the_torch_import_of_the_entry_point_is_one_line_and_status_130(tmp_path):
    # Ctrl-C arrives while torch is being imported, before any command runs: the console entry point (the
    # `cellnas` script runs `sys.exit(cellnas.cli.main())`) must still end with one line and status 130
    script = textwrap.dedent("""
        import sys

        class Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, Interrupt())
        sys.argv = ["cellnas", "search", "--epochs", "1", "--out", sys.argv[1]]
        from cellnas.cli import main
        sys.exit(main())
    """)
    env = {**os.environ, "CELLNAS_BUSY_CHECK": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "cellnas search: interrupted"
    assert not (tmp_path / "run").exists()


def test_bench_search_step_refuses_exact_hvp_at_first_order(capsys):
    assert main(["bench", "search-step", "--order", "1", "--hvp", "exact"]) == 2
    err = _one_line_error(capsys)
    assert "--hvp exact needs --order 2" in err


CIFAR_MISSING = ["DARTS_V2", "--preset", "darts-cifar10", "--threads", "1"]


@pytest.mark.parametrize("seeds", [["--seeds", "0,1,2"], []], ids=["seeds", "single"])
def test_a_train_that_cannot_find_its_data_leaves_no_directory(tmp_path, monkeypatch, capsys, seeds):
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "nowhere")
    assert main(["train", *CIFAR_MISSING, "--data-dir", missing, *seeds]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither runs/train-<time> nor runs/
    # a nested --out: the directories this command made are removed again
    assert main(["train", *CIFAR_MISSING, "--data-dir", missing, "--out", "a/b/run", *seeds]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # an empty --out the user made beforehand is kept (and left empty), as is what is already in runs/
    (tmp_path / "mine").mkdir()
    (tmp_path / "runs" / "old").mkdir(parents=True)
    assert main(["train", *CIFAR_MISSING, "--data-dir", missing, "--out", "mine", *seeds]) == 2
    assert main(["train", *CIFAR_MISSING, "--data-dir", missing, *seeds]) == 2
    assert list((tmp_path / "mine").iterdir()) == []
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["old"]
