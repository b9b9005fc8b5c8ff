"""``cellnas bench`` end to end on tiny sizes (issue 7): the JSON results carry the promised fields."""

from __future__ import annotations

import json

import pytest

from cellnas.cli import main
from cellnas.commands.bench import print_search_step

TINY = ["--channels", "4", "--layers", "3", "--size", "8", "--batch", "4", "--repeats", "1", "--threads", "1"]


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def check_step_fields(r: dict) -> None:
    assert r["step_s"] > 0 and r["images_per_s"] > 0
    assert r["flops_per_step"] > 0 and r["flops_per_s"] > 0
    assert r["peak_mem_bytes"] > 0
    assert r["threads"] == 1 and len(r["load_average_1min"]) == 2
    assert len(r["step_s_all"]) == r["repeats"] == 1
    from cellnas import native

    # a result says whether the C kernel computed the depthwise weight gradients, and if not, why
    assert r["native_kernels"] is native.available()
    assert (r["native_kernels_reason"] is None) is native.available()
    assert r["native_threads"] == native.threading_model()
    assert r["native_threads"] in (("openmp", "pthreads") if native.available() else (None,))


def test_search_step_json(capsys):
    r = run_json(capsys, ["bench", "search-step", "--json", "--warmup", "0", *TINY])
    check_step_fields(r)
    assert r["order"] == 1 and r["batch"] == 4 and r["device"] == "cpu"
    assert "baseline_step_s" not in r


def test_search_step_second_order_with_baseline_reports_speedup(capsys):
    r = run_json(capsys, ["bench", "search-step", "--json", "--baseline", "--order", "2", "--warmup", "0", *TINY])
    check_step_fields(r)
    assert r["order"] == 2
    assert r["baseline_step_s"] > 0 and r["baseline_flops_per_step"] > 0
    assert r["baseline_peak_mem_bytes"] is None or r["baseline_peak_mem_bytes"] > 0
    assert r["speedup"] == pytest.approx(r["baseline_step_s"] / r["step_s"])
    assert len(r["baseline_step_s_all"]) == 1


def test_search_step_baseline_in_separate_processes(capsys):
    r = run_json(capsys, ["bench", "search-step", "--json", "--baseline", "--schedule", "processes", "--warmup", "0",
                          "--passes", *TINY])  # fmt: skip
    assert r["schedule"] == "processes" and r["speedup_paired"] is None
    # candidate, baseline, candidate: the candidate's figures pool its two fresh-process runs
    assert len(r["step_s_all"]) == 2 and len(r["baseline_step_s_all"]) == 1
    assert r["speedup"] == pytest.approx(r["baseline_step_s"] / r["step_s"])
    assert r["flops_per_step"] > 0 and r["baseline_flops_per_step"] > 0
    assert r["maxrss_bytes"] > 0 and r["baseline_maxrss_bytes"] > 0
    passes = ("forward", "alpha", "weights", "both")
    assert set(r["passes_s"]) == set(r["baseline_passes_s"]) == set(r["passes_speedup"]) == set(passes)
    for p in passes:
        assert r["passes_s"][p] > 0 and r["baseline_passes_s"][p] > 0
        assert r["passes_speedup"][p] == pytest.approx(r["baseline_passes_s"][p] / r["passes_s"][p])
    print_search_step(r)
    out = capsys.readouterr().out
    assert "(ratio of medians; processes)" in out
    assert "C kernels    " in out
    assert "supernet / baseline = speed-up" in out and all(f"  {p} " in out for p in passes)


def test_search_step_passes_without_baseline(capsys):
    r = run_json(capsys, ["bench", "search-step", "--json", "--warmup", "0", "--passes", *TINY])
    assert set(r["passes_s"]) == {"forward", "alpha", "weights", "both"}
    assert "baseline_passes_s" not in r and "passes_speedup" not in r


def test_timed_passes_compute_the_same_gradients_on_both_implementations():
    """The passes timed by --passes are the same maths on the supernet and the baseline (same weights and α)."""
    import torch

    from cellnas.bench.baseline import baseline_from
    from cellnas.bench.search_step import make_pass_fns, synthetic_batches
    from cellnas.supernet import SearchNetwork

    x, y = synthetic_batches(3, 8, seed=1)[:2]
    x, y = x.double(), y
    net = SearchNetwork(C=4, layers=3, seed=1).double()
    base = baseline_from(net).double()
    ours, theirs = make_pass_fns(net, x, y), make_pass_fns(base, x, y)
    n_alpha = len(net.arch_parameters())
    assert len(ours["alpha"]()) == n_alpha and len(ours["weights"]()) == len(net.weight_parameters())
    both = ours["both"]()
    for a, b in zip(ours["alpha"](), both[:n_alpha]):
        torch.testing.assert_close(a, b)
    for a, b in zip(ours["alpha"](), theirs["alpha"]()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours["forward"](), theirs["forward"](), rtol=1e-12, atol=1e-12)


def test_train_step_json_and_text(capsys):
    r = run_json(capsys, ["bench", "train-step", "DARTS_V2", "--json", "--warmup", "0", *TINY])
    check_step_fields(r)
    assert r["benchmark"] == "train-step" and r["params"] > 0
    assert main(["bench", "train-step", "DARTS_V2", "--warmup", "0", "--no-auxiliary", *TINY]) == 0
    out = capsys.readouterr().out
    assert "s/step" in out and "GFLOP" in out and "1 threads" in out


def test_train_step_amp_and_compile_are_those_of_cellnas_train(capsys, monkeypatch):
    import torch

    compiled, autocast_seen = [], []
    real_forward = torch.nn.Module.__call__

    def fake_compile(model, *a, **kw):  # the wiring, not inductor (minutes on CPU; tests/test_cuda.py runs it)
        compiled.append(model)

        def forward(x):
            autocast_seen.append(torch.is_autocast_enabled("cpu"))
            return real_forward(model, x)

        return forward

    monkeypatch.setattr(torch, "compile", fake_compile)
    r = run_json(capsys, ["bench", "train-step", "DARTS_V2", "--json", "--warmup", "1", "--amp", "bf16", "--compile",
                          *TINY])  # fmt: skip
    assert (r["amp"], r["compile"]) == ("bf16", True)
    assert len(compiled) == 1 and autocast_seen == [True, True]  # one warm-up and one timed step, both autocast
    r = run_json(capsys, ["bench", "train-step", "DARTS_V2", "--json", "--warmup", "0", *TINY])
    assert (r["amp"], r["compile"]) == ("off", False) and len(compiled) == 1
    assert main(["bench", "train-step", "DARTS_V2", "--warmup", "0", "--amp", "bf16", *TINY]) == 0
    assert "options      bf16 autocast, NCHW" in capsys.readouterr().out


def test_data_json(capsys):
    r = run_json(capsys, ["bench", "data", "--json", "--dataset", "digits", "--batch", "8", "--n-batches", "2",
                          "--workers", "0", "--threads", "1"])  # fmt: skip
    assert r["ours_images_per_s"] > 0 and r["torch_dataloader_images_per_s"] > 0
    assert list(r["torch_dataloader_images_per_s_by_workers"]) == ["0"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["bench", "search-step", "--repeats", "0"], "--repeats"),
        (["bench", "search-step", "--threads", "0"], "--threads"),
        (["bench", "search-step", "--schedule", "processes"], "--baseline"),
        (["bench", "search-step", "--order", "2", "--baseline", "--layers", "2"], "--layers 3 or more"),
        (["bench", "train-step", "DARTS_V2", "--drop-path", "1.5"], "--drop-path"),
        (["bench", "data", "--workers", "a,b"], "--workers"),
    ],
)
def test_bad_arguments_are_one_line_errors(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_an_error_in_the_benchmark_process_reaches_the_caller():
    from cellnas.bench.search_step import _in_fresh_process

    job = dict(which="candidate", order=3, batch_size=2, channels=4, layers=3, size=8, device="cpu", repeats=1,
               warmup=0, hvp="fd", num_classes=10, in_channels=3, seed=0, threads=1, keep_freed_memory=False,
               log_level=30)  # fmt: skip
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        _in_fresh_process(job)


def test_search_step_times_a_pc_darts_candidate_against_darts_baseline(capsys):
    argv = ["bench", "search-step", "--warmup", "0", *TINY]
    plain = run_json(capsys, [*argv, "--json"])
    pc = run_json(capsys, [*argv, "--json", "--baseline", "--partial-channels", "2", "--edge-norm"])
    check_step_fields(pc)
    assert (pc["partial_channels"], pc["edge_norm"]) == (2, True)
    assert (plain["partial_channels"], plain["edge_norm"]) == (1, False)
    assert pc["flops_per_step"] < plain["flops_per_step"]  # the ops run on half the channels
    assert pc["baseline_flops_per_step"] > plain["flops_per_step"]  # the baseline stays DARTS's (every op, full C)
    assert main([*argv, "--partial-channels", "2"]) == 0
    assert "PC-DARTS supernet: partial channels K=2 (the baseline is DARTS's)" in capsys.readouterr().out
