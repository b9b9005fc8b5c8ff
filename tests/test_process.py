"""Process-level behaviour: SIGTERM handled as Ctrl-C, pool workers that end with their parent, the run lock,
the busy-machine warning and the thread count a resume takes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cellnas.cli import main
from cellnas.runs import StopFlag, sigterm_as_sigint
from cellnas.search import loop as search_loop


def test_sigterm_asks_a_running_loop_to_stop_after_its_step():
    with sigterm_as_sigint(), StopFlag().installed() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored on the way out


def test_sigterm_outside_a_loop_interrupts_like_ctrl_c():
    # Python's own Ctrl-C handler, as in a terminal: a shell starts background jobs with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_sigint():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes: never reached
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_to_a_search_keeps_its_checkpoint_and_says_how_to_resume(tmp_path, monkeypatch, capsys, caplog):
    out = tmp_path / "run"
    real_step = search_loop._Search.step

    def terminated_step(self, lr):
        real_step(self, lr)
        if self.global_step == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(search_loop._Search, "step", terminated_step)
    argv = ["search", "--no-progress", "--no-plots", "-C", "4", "-L", "3", "--batch-size", "32",
            "--steps-per-epoch", "2", "--epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 143  # 128 + SIGTERM, as shells and schedulers report it; Ctrl-C keeps 130
    err = capsys.readouterr().err
    assert "checkpoint written" in err and f"cellnas search --resume {out}" in err and "Traceback" not in err
    assert err.startswith("cellnas search: SIGTERM received; interrupted")
    assert "SIGTERM received" in caplog.text and "Ctrl-C again" not in caplog.text
    assert (out / "checkpoint.pt").is_file()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): read its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_pool_worker_ends_when_its_parent_is_killed(tmp_path):
    (tmp_path / "task.py").write_text("import os\n\ndef pid(_):\n    return os.getpid()\n")
    script = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, sys.argv[1])
        from task import pid
        from cellnas.evaluators.executor import ProcessExecutor

        if __name__ == "__main__":
            ex = ProcessExecutor(1)
            (done,) = ex.map_unordered(pid, [0])
            print(done.value, flush=True)
            os._exit(0)  # as if killed: no pool shutdown
        """
    )
    (tmp_path / "parent.py").write_text(script)
    res = subprocess.run([sys.executable, str(tmp_path / "parent.py"), str(tmp_path)], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    worker = int(res.stdout.split()[-1])
    deadline = time.monotonic() + 15
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), f"worker {worker} outlived its parent"


def test_busy_warning_says_when_the_threads_would_share_cores_with_other_work():
    from cellnas.cpu import busy_warning

    assert busy_warning(2, others=0, cores=2) is None
    assert busy_warning(1, others=1, cores=2) is None
    message = busy_warning(2, others=1, cores=2)
    assert "1 other thread is already running on this machine's 2 cores" in message and "--threads 1" in message
    assert "--threads 1" in busy_warning(4, others=7, cores=4)  # never suggests 0 threads


def test_other_runnable_reads_the_running_count_without_counting_itself():
    from cellnas.cpu import other_runnable

    n = other_runnable(samples=3, interval=0.001)
    assert n is None or n >= 0


def test_the_cli_warns_about_a_busy_machine_before_a_search_unless_told_not_to(tmp_path, monkeypatch, caplog):
    import cellnas.cpu

    monkeypatch.setattr(cellnas.cpu, "other_runnable", lambda *a, **k: 3)
    monkeypatch.setenv("CELLNAS_BUSY_CHECK", "1")
    argv = ["search", "--threads", "1", "--no-progress", "--no-plots", "-C", "4", "-L", "3", "--batch-size", "16",
            "--steps-per-epoch", "1", "--epochs", "1"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "3 other threads are already running" in caplog.text
    caplog.clear()
    monkeypatch.setenv("CELLNAS_BUSY_CHECK", "0")
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert "already running" not in caplog.text


def test_a_run_directory_in_use_is_refused_to_a_second_process_and_free_again_after(tmp_path):
    from cellnas.runs import run_lock

    code = f"from cellnas.runs import run_lock\nwith run_lock({str(tmp_path)!r}): pass"
    with run_lock(tmp_path):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert res.returncode != 0 and f"is in use by another cellnas process (pid {os.getpid()})" in res.stderr
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr  # released; a killed holder's lock goes with its process


def test_a_resume_takes_the_thread_count_its_run_recorded_unless_told(tmp_path):
    import json

    from cellnas.runs import resume_threads

    assert resume_threads(tmp_path, None) is None  # no meta.json: torch's own
    (tmp_path / "meta.json").write_text(json.dumps({"torch_threads": 1}))
    assert resume_threads(tmp_path, None) == 1
    assert resume_threads(tmp_path, 2) == 2  # --threads wins
    (tmp_path / "meta.json").write_text(json.dumps({"torch_threads": "x"}))
    assert resume_threads(tmp_path, None) is None


def test_a_resumed_train_takes_its_runs_thread_count(tmp_path, monkeypatch):
    import torch

    out = tmp_path / "run"
    argv = ["train", "DARTS_V2", "--dataset", "digits", "-C", "4", "-L", "3", "--steps-per-epoch", "1",
            "--no-progress"]  # fmt: skip
    assert main([*argv, "--epochs", "1", "--threads", "2", "--out", str(out)]) == 0
    torch.set_num_threads(1)
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    try:
        assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
        assert seen == [2]  # as its first session, though this process had 1
        seen.clear()
        assert main(["train", "--resume", str(out), "--epochs", "3", "--threads", "1"]) == 0
        assert seen == [1]
    finally:
        real(1)


def test_the_busy_warning_counts_the_threads_a_resume_will_use(tmp_path, monkeypatch, caplog):
    import json

    import cellnas.cpu

    (tmp_path / "meta.json").write_text(json.dumps({"torch_threads": 1}))
    monkeypatch.setattr(cellnas.cpu, "other_runnable", lambda *a, **k: 1)
    monkeypatch.setattr(cellnas.cpu.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("CELLNAS_BUSY_CHECK", "1")
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # this process's own count would not fit
    main(["search", "--resume", str(tmp_path)])  # no checkpoint: fails after the check, which is what is tested
    assert "would add" not in caplog.text  # 1 other + the run's 1 thread fit 2 cores


def test_a_run_saved_with_a_value_checked_only_now_says_why_it_cannot_resume(tmp_path):
    import torch

    from cellnas.errors import CellnasError
    from cellnas.search import search

    run = search(out=tmp_path / "old", dataset="digits", channels=4, layers=3, batch_size=16, epochs=1,
                 steps_per_epoch=1, progress=False, plots=False)  # fmt: skip
    ckpt = run.run_dir / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    state["config"]["grad_clip"] = -1.0  # accepted before 2026-12-02
    torch.save(state, ckpt)
    with pytest.raises(CellnasError, match=r"cannot resume .*saved config is refused now .*grad-clip"):
        search(resume=run.run_dir, epochs=2, progress=False)


def test_sigterm_still_stops_a_process_whose_ctrl_c_is_ignored(tmp_path):
    # `cellnas ... &` in a script or under nohup starts with SIGINT ignored; SIGTERM used to be swallowed there
    script = textwrap.dedent("""
        import os, signal, sys, time
        from cellnas.runs import sigterm_as_sigint
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            with sigterm_as_sigint():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        except KeyboardInterrupt:
            sys.exit(7)
        sys.exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == 7


@pytest.mark.parametrize("kind", ["search", "train"])
def test_sigterm_in_the_last_step_lets_the_run_finish_and_says_so(tmp_path, monkeypatch, capsys, caplog, kind):
    # the loop stops after the step in which the signal came: after the last one that is the end of the run, which
    # then finishes normally (exit 0, complete results) instead of keeping a checkpoint with nothing left to resume
    from cellnas.train import loop as train_loop

    out = tmp_path / "run"
    cls = search_loop._Search if kind == "search" else train_loop._Training
    real_step = cls.step
    last = 1  # two steps of one epoch

    def terminated_step(self, *args):
        real_step(self, *args)
        if self.global_step == last:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cls, "step", terminated_step)
    net = ["--no-progress", "--no-plots", "-C", "4", "-L", "3", "--batch-size", "32", "--steps-per-epoch", "2",
           "--epochs", "1", "--out", str(out)]  # fmt: skip
    argv = ["search", *net] if kind == "search" else ["train", "DARTS_V2", "--dataset", "digits", *net]
    assert main(argv) == 0
    assert "the stop came during the run's last step" in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    last = 0  # a stop in an earlier step still interrupts
    assert main([*argv[:-1], str(tmp_path / "again")]) == 143


def test_a_signal_during_a_c_extension_import_ends_in_one_line_not_an_import_error_traceback(monkeypatch, capsys):
    # seen with SIGTERM at 3 s into `cellnas search`: scipy's extension (imported by scikit-learn) failed to initialise
    # and Python raised "ImportError: initialization failed" from the KeyboardInterrupt: a traceback, exit status 1
    from cellnas.cli import interrupted
    from cellnas.commands import zoo as zoo_command

    def failing_import(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(zoo_command, "run", failing_import)
    assert main(["zoo"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "cellnas zoo: interrupted" and "Traceback" not in err
    assert not interrupted(ImportError("a real import error"))
