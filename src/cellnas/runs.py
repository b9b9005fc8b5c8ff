"""Self-describing run directories: atomic files, config/meta, metrics and checkpoints.

Every run writes ``config.json`` (fully resolved), ``meta.json`` (versions, device,
command line, times, and one entry per session in ``sessions``), ``metrics.jsonl`` (one JSON line per epoch)
and an atomically written ``checkpoint.pt``. A crash during any write leaves the previous file intact:
files are written to a temporary sibling, fsynced, then renamed over the target. A write that fails (a full
disk, a read-only directory) raises :class:`WriteFailed`, one line naming the file and the reason, and leaves the
previous file as it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellnas.errors import CellnasError, RunError

__all__ = [
    "StopFlag",
    "LAST_STEP_STOP",
    "RunInterrupted",
    "WriteFailed",
    "ReadOnlyRun",
    "Diverged",
    "record_stop",
    "sigterm_as_sigint",
    "run_lock",
    "resume_lock",
    "saved_config_refused",
    "resume_threads",
    "LOCK_FILE",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "Termination",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "new_run_dir",
    "run_kind",
    "other_kind_error",
    "is_search_config",
    "missing_dirs",
    "undo_start",
    "lock_holder",
    "write_meta",
    "record_session",
    "non_finite_tensor",
    "data_fingerprint",
    "append_metrics",
    "read_metrics",
    "check_same_data",
    "SearchRun",
    "search_run",
    "TrainRun",
    "train_run",
    "read_json_object",
    "git_commit",
    "now_iso",
    "position",
]


def position(epoch: int, step_in_epoch: int, steps_per_epoch: int, epochs: int) -> str:
    """How far a run got (``epoch`` epochs done, then ``step_in_epoch`` steps), counted from 1 as the progress
    lines count (``epoch 2/2``): "after step 1/3 of epoch 2/2", "after epoch 1/2" or "at the start"."""
    if step_in_epoch:
        return f"after step {step_in_epoch}/{steps_per_epoch} of epoch {epoch + 1}/{epochs}"
    return f"after epoch {epoch}/{epochs}" if epoch else "at the start"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it, which is not thread-safe).
_UMASK = _read_umask()


class WriteFailed(RunError):
    """A file of a run could not be written (a full disk, a read-only or vanished directory). The message is one
    line naming the file and the reason; the previous version of an atomically written file is left intact."""

    def __init__(self, path: str | os.PathLike, exc: OSError, kept: str = "") -> None:
        self.path, self.reason = Path(path), exc.strerror or str(exc)
        self.errno = exc.errno
        super().__init__(f"cannot write {self.path}: {self.reason}" + (f"; {kept}" if kept else ""))


def _kept(path: Path) -> str:
    """What a failed atomic write of ``path`` leaves: the file as it was before, if there was one."""
    try:
        existed = path.is_file()
    except OSError:
        existed = False
    if not existed:
        return ""
    return "the last checkpoint is kept" if path.name == "checkpoint.pt" else f"the previous {path.name} is kept"


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise RunError(f"cannot write {path}: it is a directory; give a file name")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise WriteFailed(path, exc, _kept(path)) from None
    try:
        # mkstemp creates the file 0600; give it the permissions an ordinary open() would (0666 less the umask)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # ENOSPC, EDQUOT, EIO ...: one line, the previous file intact
            raise WriteFailed(path, exc, _kept(path)) from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic_write(Path(path), lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


class _RecordingWriter:
    """A binary file that remembers the ``OSError`` its ``write`` raised: torch's zip writer reports a failed write
    (a full disk) as its own ``RuntimeError`` ("unexpected pos ..."), and this keeps the real reason."""

    def __init__(self, fh) -> None:
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file + fsync + rename; a failed write raises :class:`WriteFailed` (the
    previous file intact), never torch's ``RuntimeError``.

    torch writes straight into the temporary file through :class:`_RecordingWriter`. Serialising into memory first
    and writing the bytes would do as well, but measured 40-70 % slower on checkpoints of 45 and 200 MB (96 against
    66 ms, 390-480 against 280 ms on this project's 2-core machine) and holds a second copy in memory.
    """
    import torch

    def write(fh) -> None:
        recording = _RecordingWriter(fh)
        try:
            torch.save(obj, recording)
        except Exception:
            if recording.error is not None:
                raise recording.error from None
            raise
        if recording.error is not None:  # a torch that swallowed the failed write must not rename a torn file
            raise recording.error

    return _atomic_write(Path(path), write)


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def new_run_dir(out: str | os.PathLike | None, kind: str, root: str | os.PathLike = "runs") -> Path:
    """Create the run directory. ``out=None`` makes ``runs/<kind>-<timestamp>``.

    An existing non-empty ``out`` is refused (never overwrite a run); use ``--resume``. A file is refused as one.
    A directory holding nothing but a lock file (:func:`run_lock`) is a start that has written nothing yet: refused
    while its process holds the lock (naming it), taken over once the lock is free (that start died).
    """
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{kind}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{kind}-{stamp}-{n}"
    else:
        if not str(out).strip():  # Path("") is ".": the current directory was never meant
            raise RunError("--out is empty; give the directory for the run (or leave --out out for "
                           f"runs/{kind}-<timestamp>)")  # fmt: skip
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise RunError(f"--out {path} is a file, not a directory; give a new (or empty) directory for the run")
        if path.is_dir() and [p.name for p in path.iterdir()] == [LOCK_FILE]:
            with run_lock(path):  # RunError while another process holds it
                (path / LOCK_FILE).unlink(missing_ok=True)
        if path.exists() and any(path.iterdir()):
            stopped = _stopped_before_checkpoint(path, kind)
            if stopped is not None:
                raise RunError(f"--out {path} holds a {kind} run that {stopped}; choose another --out, or remove "
                               f"{path} and start again")  # fmt: skip
            raise RunError(_not_empty(path, kind))
    created = missing_dirs(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a name too long, a full disk: the parents made on the way are taken back
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise RunError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
    return path


#: The kinds of run directory (``meta.json``'s ``"kind"``): what each is called, and the command that resumes it.
_RUN_KINDS: dict[str, tuple[str, str]] = {
    "train": ("`cellnas train` run", "cellnas train"),
    "train-seeds": ("`cellnas train --seeds` run", "cellnas train"),
    "search": ("`cellnas search` run", "cellnas search"),
}


def run_kind(run_dir: str | os.PathLike) -> str | None:
    """The kind of run ``run_dir`` holds: ``"train"``, ``"train-seeds"`` or ``"search"`` as its ``meta.json``
    records it (:func:`write_meta`), or, without a readable ``meta.json``, ``"search"`` when its ``config.json`` is a
    search config (:func:`is_search_config`); ``None`` for anything else. Reads two small files, no checkpoint."""
    run_dir = Path(run_dir)
    meta = read_json_object(run_dir / "meta.json")
    if meta is not None:
        kind = meta.get("kind")
        return kind if isinstance(kind, str) and kind in _RUN_KINDS else None
    config = read_json_object(run_dir / "config.json")
    return "search" if config is not None and is_search_config(config) else None


def _not_empty(path: Path, kind: str) -> str:
    """Why a fresh ``kind`` run cannot start in the non-empty directory ``path``, and what the user may do instead:
    resume the run that is there, with the command that resumes its kind (a search is no train run to resume)."""
    found = run_kind(path)
    if found is None:
        return (f"run directory {path} already exists and is not empty (it holds no cellnas run); choose another "
                "--out (a new or empty directory)")  # fmt: skip
    name, command = _RUN_KINDS[found]
    if found == kind:
        return (f"run directory {path} already exists and is not empty; choose another --out, or continue it with "
                f"`{command} --resume {path}`")  # fmt: skip
    return (f"run directory {path} already exists and holds a {name}; choose another --out, or continue that run "
            f"with `{command} --resume {path}`")  # fmt: skip


def other_kind_error(run_dir: str | os.PathLike, found: str, kind: str) -> RunError:
    """The error for resuming ``run_dir``, a run of kind ``found``, as a ``kind`` run: names what it is and the
    command that resumes it."""
    name, command = _RUN_KINDS[found]
    return RunError(f"cannot resume {run_dir}: it is a {name}, not a {_RUN_KINDS[kind][0]}; resume it with "
                    f"`{command} --resume {run_dir}`")  # fmt: skip


def git_commit() -> str | None:
    """The commit of the cellnas source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def resume_threads(run_dir: str | os.PathLike, threads: int | None) -> int | None:
    """The torch thread count to resume ``run_dir`` with: ``threads`` when given, else the count its first session
    recorded in ``meta.json`` (``torch_threads``), so that the resumed steps round as the first ones did; ``None``
    when neither says (keep torch's)."""
    if threads is not None:
        return threads
    try:
        saved = json.loads((Path(run_dir) / "meta.json").read_text()).get("torch_threads")
    except (OSError, ValueError, AttributeError):
        return None
    return saved if isinstance(saved, int) and saved >= 1 else None


_SESSION_KEYS = ("start_time", "command_line", "device", "torch_threads", "cellnas_version", "git_commit")


def _session(device: str, resumed_from: dict | None) -> dict:
    """One session of a run: who ran it, where and from which position (``None``: the start)."""
    import torch

    from cellnas import __version__

    return {
        "start_time": now_iso(),
        "command_line": sys.argv,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cellnas_version": __version__,
        "git_commit": git_commit(),
        "resumed_from": resumed_from,
    }


def write_meta(run_dir: Path, device: str, extra: dict | None = None) -> dict:
    """Write ``meta.json``: what produced this run (STYLE 5). Its top-level fields describe the first session;
    ``sessions`` lists every session, the first and each resume (:func:`record_session`)."""
    import torch

    from cellnas import __version__

    meta = {
        "cellnas_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "torch_threads": torch.get_num_threads(),  # a resume takes it again: sums over threads round differently
        "command_line": sys.argv,
        "start_time": now_iso(),
        "end_time": None,
    }
    if extra:
        meta.update(extra)
    meta["sessions"] = [{**{k: meta[k] for k in _SESSION_KEYS}, "resumed_from": None}]
    atomic_write_json(run_dir / "meta.json", meta)
    return meta


def record_session(run_dir: str | os.PathLike, device: str, resumed_from: dict) -> dict:
    """Append this session, a resume from ``resumed_from`` (where the run stood: for a training or a search
    ``epoch`` done, ``step_in_epoch`` and ``position`` in words, :func:`position`), to ``meta.json``'s
    ``sessions``, and clear ``end_time`` until the run finishes again.

    A ``meta.json`` written before sessions were recorded gets its first session from its top-level fields.
    """
    path = Path(run_dir) / "meta.json"
    meta = read_json_object(path) or {}
    sessions = meta.get("sessions")
    if not isinstance(sessions, list):
        first = {k: meta.get(k) for k in _SESSION_KEYS}
        sessions = [{**first, "resumed_from": None}] if meta else []
    meta["sessions"] = [*sessions, _session(device, dict(resumed_from))]
    meta["end_time"] = None
    meta.pop("stopped", None)  # why an earlier session stopped: this one goes on
    atomic_write_json(path, meta)
    return meta


def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one JSON line to ``metrics.jsonl`` (flushed and fsynced). A failed write raises :class:`WriteFailed`;
    a torn last line is ignored by :func:`read_metrics` and removed on resume (:func:`truncate_metrics`)."""
    path = Path(run_dir) / "metrics.jsonl"
    line = json.dumps(record, default=_json_default) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise WriteFailed(path, exc) from None


def read_metrics(run_dir: Path) -> list[dict]:
    """All complete lines of ``metrics.jsonl`` (a torn last line from a crash is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: Path, keep_epochs: int) -> None:
    """Keep only records of epochs < ``keep_epochs`` (used on resume: later lines were not checkpointed)."""
    records = [r for r in read_metrics(run_dir) if r.get("epoch", 0) < keep_epochs]
    atomic_write_text(
        Path(run_dir) / "metrics.jsonl", "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
    )


#: Exit status of a command stopped by Ctrl-C: 128 + SIGINT, the shell's convention (2 is argparse's usage error).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Exit status of a command stopped by SIGTERM (``kill``, a scheduler): 128 + SIGTERM, as the shell reports it.
EXIT_TERMINATED = 128 + signal.SIGTERM


class RunInterrupted(RunError):
    """Raised after Ctrl-C (or SIGTERM) once a run's state is safe (a checkpoint written, or the last one kept); the
    message says how to continue. The CLI prints it and exits with :data:`EXIT_INTERRUPTED` (Ctrl-C) or
    :data:`EXIT_TERMINATED` (SIGTERM)."""


def _signal_name(signum) -> str:
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


#: Said when a stop (Ctrl-C, SIGTERM) arrives during a run's last step: the loop stops after that step, which ends
#: the run, so it finishes normally (exit status 0) and there is nothing to resume.
LAST_STEP_STOP = "the stop came during the run's last step: the run is complete, so it finishes (nothing to resume)"


class StopFlag:
    """Ctrl-C handling for long loops: the first SIGINT asks the loop to stop after the current
    step (so it can write a consistent checkpoint); a second one raises KeyboardInterrupt at once.
    SIGTERM, passed on by :func:`sigterm_as_sigint`, does the same and is named as such."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            if signum == signal.SIGTERM:
                how = "SIGTERM received; another SIGTERM or Ctrl-C aborts at once"
            else:
                how = "Ctrl-C again to abort at once"
            logging.getLogger("cellnas").warning("\nstopping after this step (%s)", how)

        signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


LOCK_FILE = ".lock"


def lock_holder(run_dir: str | os.PathLike) -> str | None:
    """The pid of the process holding ``run_dir``'s lock (:func:`run_lock`), ``None`` when none does (or there is no
    lock file). Creates and writes nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _stopped_before_checkpoint(run_dir: Path, kind: str, checkpoint: str = "checkpoint.pt") -> str | None:
    """When ``run_dir`` holds the ``config.json`` and ``meta.json`` of a ``kind`` run but no ``checkpoint``, and no
    process holds its lock: what became of it, in words ("stopped before its first checkpoint (why), so there is
    nothing to resume"; the why only when one was recorded, :func:`record_stop`); ``None`` for any other directory
    (one whose run is still going included)."""
    meta = read_json_object(run_dir / "meta.json")
    if meta is None or meta.get("kind") != kind or not (run_dir / "config.json").is_file():
        return None
    if (run_dir / checkpoint).exists():
        return None
    holder = lock_holder(run_dir)
    if holder is not None:  # not stopped: the caller's run_lock (or the next attempt) names the holder
        return None
    stopped = meta.get("stopped")
    reason = stopped.get("reason") if isinstance(stopped, dict) else None
    why = f" ({reason})" if isinstance(reason, str) and reason else " (no reason was recorded)"
    return f"stopped before its first checkpoint{why}, so there is nothing to resume"


@contextmanager
def run_lock(run_dir: str | os.PathLike, *, new: bool = False):
    """Hold ``run_dir``'s lock for the block: a second process that runs (or resumes) the same directory meanwhile
    gets a :class:`RunError` naming the holder's pid, instead of both writing metrics and checkpoints into it.

    An advisory ``flock`` on ``run_dir/.lock``, released by the kernel when the process ends (a killed run leaves
    no stale lock). Where ``fcntl`` is missing (Windows) the block runs unlocked. A directory whose lock file
    cannot be created or opened for writing raises :class:`ReadOnlyRun`; a lock file that cannot be written,
    :class:`WriteFailed`. ``new``: ``run_dir`` is a new run's (then a read-only directory is no run to copy).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise ReadOnlyRun(run_dir, exc, new=new) from None
        raise WriteFailed(path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunError(f"{run_dir} is in use by another cellnas process (pid {holder}); wait for it to stop "
                           "(or stop it with Ctrl-C), or choose another directory") from None  # fmt: skip
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise WriteFailed(path, exc) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class ReadOnlyRun(RunError):
    """A run directory this process cannot write (a read-only mount, no permission): it can be read, not run."""

    def __init__(self, run_dir: str | os.PathLike, exc: OSError, *, new: bool = False) -> None:
        self.run_dir = Path(run_dir)
        reason = exc.strerror or str(exc)
        if new:  # a new run: nothing in it to copy or resume
            super().__init__(f"cannot start a run in {run_dir}: it is read-only ({reason}); choose a writable --out")
            return
        super().__init__(f"{run_dir} is read-only ({reason}): a run continues only in a directory it can write; "
                         f"copy it somewhere writable (cp -r {run_dir} NEW) and resume the copy")  # fmt: skip


def resume_lock(run_dir: str | os.PathLike, checkpoint: str = "checkpoint.pt"):
    """:func:`run_lock` for resuming ``run_dir`` when it holds ``checkpoint``; otherwise no lock (and no lock file
    left behind): loading the checkpoint then says why the run cannot be resumed."""
    return run_lock(run_dir) if (Path(run_dir) / checkpoint).is_file() else contextlib.nullcontext()


def saved_config_refused(run_dir: str | os.PathLike, exc: Exception) -> CellnasError:
    """The error for a run whose saved config fails a check added after an earlier cellnas started it."""
    return CellnasError(f"cannot resume {run_dir}: its saved config is refused now ({exc}); the cellnas that "
                        "started it accepted it: finish it with that version, or start a new run")


class Termination:
    """What :func:`sigterm_as_sigint` yields: whether SIGTERM arrived within the block (the exit status then is
    :data:`EXIT_TERMINATED`, not Ctrl-C's :data:`EXIT_INTERRUPTED`)."""

    def __init__(self) -> None:
        self.received = False

    @property
    def exit_status(self) -> int:
        return EXIT_TERMINATED if self.received else EXIT_INTERRUPTED


@contextmanager
def sigterm_as_sigint():
    """Within the block, SIGTERM (what ``kill``, SLURM and other schedulers send) is handled as Ctrl-C: whatever
    SIGINT handler is in force when it arrives runs (called with ``signal.SIGTERM``, so that it can say which
    signal it was), so a search or training stops after its step with its checkpoint, and a pool of evaluation
    workers is shut down with the parent instead of being left orphaned. Yields a :class:`Termination` that
    records whether SIGTERM arrived. Main thread only (elsewhere a no-op)."""
    state = Termination()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        state.received = True
        current = signal.getsignal(signal.SIGINT)
        if callable(current):
            current(signal.SIGTERM, frame)
        else:  # also when SIGINT is ignored (a job started with `&` or nohup): SIGTERM must still stop it
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def rng_state(device) -> dict:
    """The global RNG states a run checkpoints (torch CPU, numpy, and CUDA on a CUDA device)."""
    import numpy as np
    import torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if getattr(device, "type", str(device)) == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and getattr(device, "type", str(device)) == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


class Diverged(RunError):
    """A run stopped because a number went non-finite; ``cause`` is where, in a few words ("non-finite training
    loss at epoch 1 step 5"), what :func:`record_stop` keeps in ``meta.json``."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def record_stop(run_dir: str | os.PathLike, reason: str) -> None:
    """Record in ``meta.json`` (``stopped``) why the run stopped, so that a later ``--resume`` or ``--out`` of a run
    that stopped before its first checkpoint can say why; best effort (a failed write keeps the previous file)."""
    path = Path(run_dir) / "meta.json"
    meta = read_json_object(path)
    if meta is None:
        return
    meta["stopped"] = {"time": now_iso(), "reason": reason}
    try:
        atomic_write_json(path, meta)
    except (WriteFailed, RunError):
        pass


def check_finite(value, what: str, *, epoch: int, step: int, checkpoint: Path, hint: str,
                 first_hint: str | None = None) -> None:  # fmt: skip
    """Stop a diverging run with one line that names where it diverged and what was kept: the last good checkpoint,
    or (when ``checkpoint`` is not written yet) nothing, with ``first_hint`` (default ``hint``) saying what to do."""
    import torch

    if not torch.isfinite(value).all():
        cause = f"non-finite {what} at epoch {epoch} step {step}"
        if not Path(checkpoint).is_file():
            raise Diverged(f"{cause}: the run diverged before its first checkpoint and stops; there is nothing to "
                           f"resume ({first_hint or hint})", cause)  # fmt: skip
        raise Diverged(f"{cause}: the run diverged and stops; the last good checkpoint is kept in {checkpoint} "
                       f"({hint})", cause)  # fmt: skip


def non_finite_tensor(named: dict) -> str | None:
    """The name of the first floating-point tensor of ``named`` (a ``state_dict``: parameters and buffers) holding
    a NaN or an infinity, or ``None`` when all are finite: what a checkpoint must pass to be called good."""
    import torch

    for name, value in named.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def data_fingerprint(dataset, budget: int = 1 << 23) -> str:
    """A short hash of ``dataset``'s (a :class:`cellnas.data.Dataset`) shapes, labels and images, kept in a
    checkpoint so that a resume on other data (another ``--data-dir`` holding other images of the same shape) is
    caught.

    Labels are hashed whole; images up to ``budget`` bytes per split, evenly spaced over it (every image of digits,
    every 4th of CIFAR's 30 MB test set, every 19th of its 150 MB training set), so that the cost stays at milliseconds
    for any dataset, while any other set of images differs in the sampled ones. The pixels are the decoded ones: an
    image folder whose files decode differently after a Pillow upgrade counts as other data.
    """
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    h.update(dataset.name.encode())
    for x, y in ((dataset.train_x, dataset.train_y), (dataset.test_x, dataset.test_y)):
        h.update(repr((tuple(x.shape), tuple(y.shape))).encode())
        h.update(y.contiguous().cpu().numpy().tobytes())
        n = int(x.shape[0])
        if n:
            per_image = x[0].numel() * x.element_size()
            stride = max(1, -(-n * per_image // budget))
            h.update(x[::stride].contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(run_dir: str | os.PathLike, *, kind: str, version: int, name: str = "checkpoint.pt") -> dict:
    """Read a run's checkpoint for ``--resume``, with one-line errors for missing, corrupt or foreign files."""
    import torch

    run_dir = Path(run_dir)
    path = run_dir / name
    if not run_dir.is_dir():
        raise RunError(f"cannot resume: {run_dir} is not a directory")
    found = run_kind(run_dir)
    if found is not None and found != kind and kind in _RUN_KINDS:
        raise other_kind_error(run_dir, found, kind)
    if not path.is_file():
        holder = lock_holder(run_dir)
        if holder is not None:
            raise RunError(f"cannot resume {run_dir}: it is in use by another cellnas process (pid {holder}) that has "
                           "written no checkpoint yet; wait for it to stop (or stop it with Ctrl-C)")  # fmt: skip
        stopped = _stopped_before_checkpoint(run_dir, kind, name)
        if stopped is not None:
            raise RunError(f"cannot resume {run_dir}: the {kind} run {stopped}; start it again with another --out "
                           f"(or remove {run_dir} first)")  # fmt: skip
        raise RunError(f"cannot resume: {run_dir} holds no {name} (was it a cellnas {kind} run?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise RunError(f"cannot resume: {path} is corrupt or unreadable ({type(exc).__name__})") from None
    found = state.get("kind") if isinstance(state, dict) else None
    if isinstance(found, str) and found != kind and found in _RUN_KINDS and kind in _RUN_KINDS:  # no meta.json
        raise other_kind_error(run_dir, found, kind)
    if (
        not isinstance(state, dict)
        or state.get("kind") != kind
        or state.get("version") != version
        or "config" not in state
    ):
        raise RunError(f"cannot resume: {path} is not a cellnas {kind} checkpoint of version {version}")
    return state


def missing_dirs(out: str | os.PathLike | None, root: str | os.PathLike = "runs") -> list[Path]:
    """The directories a fresh run's :func:`new_run_dir` will create, deepest first: ``out`` and its missing
    parents (``out=None``: ``root`` and its missing parents; the timestamped directory is always new and is not
    listed). Computed before the run directory is made, for :func:`undo_start`."""
    path = Path(root) if out is None else Path(out)
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def undo_start(run_dir: Path, new_dirs: list[Path], written: tuple[str, ...] = (), *, fresh: bool) -> None:
    """Take back a start that failed before its first checkpoint, so that it leaves no directory behind.

    Removes ``written`` (the files the start wrote into ``run_dir``, which it found empty) and then the lock file
    when nothing else is left, then ``run_dir`` when this start created it (``fresh``) and the parents in
    ``new_dirs`` (:func:`missing_dirs`, taken before ``run_dir`` was made), each only once empty. A directory that
    existed before (an empty ``--out`` the user made) is kept; anything else in a directory keeps it. Never raises:
    what cannot be removed stays.
    """
    try:
        for name in written:
            (run_dir / name).unlink(missing_ok=True)
        if run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            (run_dir / LOCK_FILE).unlink()
    except OSError:
        return
    for d in ([run_dir] if fresh and run_dir not in new_dirs else []) + new_dirs:
        try:
            d.rmdir()
        except OSError:  # not empty (or already gone): kept
            pass


#: Keys of a search config that a training config lacks: a config.json with them is a search's.
_SEARCH_KEYS = ("arch_lr", "train_portion")


def is_search_config(config: dict) -> bool:
    """Whether ``config`` (a ``config.json`` read as a dict) is a search config: it has the keys of
    :data:`_SEARCH_KEYS`, which a training config lacks."""
    return all(k in config for k in _SEARCH_KEYS)


_WARNED_UNFINISHED: set[tuple[str, int]] = set()


@dataclass(frozen=True)
class SearchRun:
    """What a search run directory says about itself: ``meta.json`` (``"kind": "search"``), ``config.json`` (its
    ``dataset``, ``data_dir``, ``epochs``) and ``metrics.jsonl`` (one line per finished epoch). ``genotype.json`` is
    rewritten after every epoch, so the cell of an unfinished search is not its result."""

    path: Path
    dataset: str
    data_dir: str | None
    epochs: int
    epochs_done: int

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.epochs

    def warn_if_unfinished(self) -> None:
        """Warn that ``genotype.json`` is the cell of an unfinished search, and how to finish it (once per run
        directory and state in a process: every command that reads the genotype calls this)."""
        key = (str(self.path.resolve()), self.epochs_done)
        if self.finished or key in _WARNED_UNFINISHED:
            return
        _WARNED_UNFINISHED.add(key)
        logging.getLogger(__name__).warning(
            "%s is an unfinished search (epoch %d of %d): its genotype.json is the cell derived after epoch %d, "
            "not the search's result; finish it with `cellnas search --resume %s`",
            self.path, self.epochs_done, self.epochs, self.epochs_done, self.path,
        )  # fmt: skip


def read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or ``None`` when the file is missing, unreadable or holds something else."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _run_dir_of(genotype) -> Path | None:
    """``genotype`` as a directory path when it names an existing directory, else ``None``."""
    if not isinstance(genotype, (str, os.PathLike)):
        return None
    path = Path(genotype)
    try:
        return path if path.is_dir() else None
    except (OSError, ValueError):  # DARTS text too long for a path, and the like
        return None


def search_run(genotype) -> SearchRun | None:
    """The :class:`SearchRun` of ``genotype`` when it names a search run directory, else ``None``.

    A directory is a search's when its ``meta.json`` says ``"kind": "search"``, or (without a readable
    ``meta.json``) when its ``config.json`` is a search config.
    """
    path = _run_dir_of(genotype)
    if path is None:
        return None
    config = read_json_object(path / "config.json")
    meta = read_json_object(path / "meta.json")
    if config is None or not isinstance(config.get("dataset"), str):
        return None
    if meta is not None and meta.get("kind") != "search":
        return None
    if meta is None and not is_search_config(config):
        return None
    epochs_done = 1 + max((int(r["epoch"]) for r in read_metrics(path) if isinstance(r.get("epoch"), int)),
                          default=-1)  # fmt: skip
    epochs = config.get("epochs")
    epochs = int(epochs) if isinstance(epochs, int) else epochs_done
    data_dir = config.get("data_dir")
    return SearchRun(path, config["dataset"], data_dir if isinstance(data_dir, str) else None, epochs, epochs_done)


def check_same_data(run_dir: Path, saved: str | None, now: str, dataset: str, old_dir: str | None,
                    new_dir: str | None) -> None:  # fmt: skip
    """On a resume: refuse data whose fingerprint (:func:`data_fingerprint`) differs from ``saved``, the checkpoint's
    (other images or labels of the same shapes would silently finish the run on another dataset); say when the data
    folder changed (``old_dir`` -> ``new_dir``), with a warning when an old checkpoint has no fingerprint to check."""
    if saved is not None and saved != now:
        back = f" (--data-dir {old_dir})" if old_dir and old_dir != new_dir else ""
        raise CellnasError(f"the {dataset} data in {new_dir or dataset} differ from the data {run_dir} ran on (other "
                           f"images or labels); resume it with its own data{back}, or start a new run")  # fmt: skip
    if old_dir is None or new_dir == old_dir:
        return
    log = logging.getLogger(__name__)
    if saved is not None:
        log.info("%s now reads its data from %s (before: %s); the images and labels are the same", run_dir, new_dir,
                 old_dir)  # fmt: skip
    else:  # a checkpoint from before the fingerprint was recorded
        log.warning("%s now reads its data from %s instead of %s, and its checkpoint cannot tell whether they hold "
                    "the same images: make sure they do, or the run ends trained on two datasets", run_dir, new_dir,
                    old_dir)  # fmt: skip


@dataclass(frozen=True)
class TrainRun:
    """What a ``cellnas train`` run directory says about the data it was trained on (its ``config.json``, or the
    ``seeds.json`` of a ``--seeds`` parent)."""

    path: Path
    dataset: str
    data_dir: str | None


def train_run(genotype) -> TrainRun | None:
    """The :class:`TrainRun` of ``genotype`` when it names a training run directory (``meta.json`` with ``"kind"``
    ``"train"`` or ``"train-seeds"``), else ``None``."""
    path = _run_dir_of(genotype)
    if path is None:
        return None
    meta = read_json_object(path / "meta.json")
    kind = meta.get("kind") if meta else None
    if kind == "train":
        config = read_json_object(path / "config.json")
    elif kind == "train-seeds":
        config = (read_json_object(path / "seeds.json") or {}).get("config")
    else:
        return None
    if not isinstance(config, dict) or not isinstance(config.get("dataset"), str):
        return None
    data_dir = config.get("data_dir")
    return TrainRun(path, config["dataset"], data_dir if isinstance(data_dir, str) else None)
