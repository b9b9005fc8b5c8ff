"""The C kernel of cellnas.native (depthwise weight gradient) and the PyTorch path that replaces it when absent."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
import torch

import cellnas.native as native
from cellnas import ops

CL = torch.channels_last
_OFF = os.environ.get("CELLNAS_NATIVE", "1").lower() in ("0", "false", "no", "off")
# skipped only where the kernel cannot be built at all; with a compiler, a kernel that fails to build fails the tests
needs_kernel = pytest.mark.skipif(_OFF or native._compiler() is None or os.name != "posix",
                                  reason="no C compiler (or CELLNAS_NATIVE=0): the PyTorch path is tested instead")


@needs_kernel
def test_the_kernel_builds_where_a_compiler_exists():
    assert native.available(), native.unavailable_reason()


def _reference(grad: torch.Tensor, x: torch.Tensor, k: int, d: int) -> torch.Tensor:
    C = x.shape[1]
    w = torch.zeros(C, 1, k, k, dtype=torch.float64)
    p = d * (k - 1) // 2
    return torch.ops.aten.convolution_backward(grad.double(), x.double(), w, None, [1, 1], [p, p], [d, d], False,
                                               [0, 0], C, [False, True, False])[1]  # fmt: skip


@pytest.fixture
def fresh_state(monkeypatch, tmp_path):
    """An unloaded module (restored afterwards) whose cache lives in tmp_path."""
    saved = native._lib, native._reason, native._tried
    native._lib, native._reason, native._tried = None, None, False
    monkeypatch.setenv("CELLNAS_CACHE", str(tmp_path))
    yield tmp_path
    native._lib, native._reason, native._tried = saved


@needs_kernel
@pytest.mark.parametrize("k,d", [(3, 1), (5, 1), (7, 1), (3, 2), (5, 2), (3, 3), (5, 3)])
@pytest.mark.parametrize("C,H,W", [(16, 8, 8), (37, 5, 7), (3, 2, 3), (20, 11, 4)])
def test_weight_grad_equals_the_convolution_backward(k, d, C, H, W):
    gen = torch.Generator().manual_seed(k * 100 + d * 10 + C)
    x = torch.randn(3, C, H, W, generator=gen).contiguous(memory_format=CL)
    g = torch.randn(3, C, H, W, generator=gen).contiguous(memory_format=CL)
    out = native.depthwise_weight_grad(g, x, k, d)
    assert out is not None and out.shape == (C, 1, k, k) and out.is_contiguous()
    torch.testing.assert_close(out.double(), _reference(g, x, k, d), rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_any_thread_count_gives_the_same_sum(threads):
    x = torch.randn(4, 16, 6, 6).contiguous(memory_format=CL)
    g = torch.randn(4, 16, 6, 6).contiguous(memory_format=CL)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = native.depthwise_weight_grad(g, x, 5, 1)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(out.double(), _reference(g, x, 5, 1), rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("k,d", [(5, 1), (3, 2), (5, 2)])
def test_depthwise_conv_gradients_with_and_without_the_kernel(monkeypatch, k, d):
    """``depthwise_conv2d``'s weight gradient through the C kernel equals the PyTorch path and float64."""
    x = torch.randn(4, 8, 10, 10).contiguous(memory_format=CL)
    w = torch.randn(8, 1, k, k)
    up = torch.randn(4, 8, 10, 10)

    calls = []
    kernel = native.depthwise_weight_grad
    monkeypatch.setattr(native, "depthwise_weight_grad", lambda *a: calls.append(1) or kernel(*a))

    def weight_grad(native_on: bool, dtype=torch.float32) -> torch.Tensor:
        monkeypatch.setattr(ops, "NATIVE_DEPTHWISE", native_on)
        wt = w.to(dtype).requires_grad_()
        y = ops.depthwise_conv2d(x.to(dtype), wt, 1, d * (k - 1) // 2, d)
        return torch.autograd.grad((y * up.to(dtype)).sum(), wt)[0]

    ref = weight_grad(False, torch.float64)
    assert not calls
    torch.testing.assert_close(weight_grad(True).double(), ref, rtol=1e-4, atol=1e-4)
    assert len(calls) == 1  # the kernel computed it
    torch.testing.assert_close(weight_grad(False).double(), ref, rtol=1e-4, atol=1e-4)
    assert len(calls) == 1


@needs_kernel
@pytest.mark.parametrize("k,d", [(5, 1), (3, 2)])
def test_flop_counting_sees_the_weight_gradient(monkeypatch, k, d):
    """Under ``FlopCounterMode`` (how ``cellnas bench`` counts FLOPs) the kernel steps aside: ATen computes the weight
    gradient and the mode counts it, the same count as with the kernel switched off."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 16, 8, 8).contiguous(memory_format=CL)
    assert native.depthwise_weight_grad(x, x, k, d) is not None
    with FlopCounterMode(display=False):
        assert native.depthwise_weight_grad(x, x, k, d) is None

    def flops(native_on: bool) -> int:
        monkeypatch.setattr(ops, "NATIVE_DEPTHWISE", native_on)
        x = torch.randn(2, 16, 8, 8).contiguous(memory_format=CL).requires_grad_()
        w = torch.randn(16, 1, k, k, requires_grad=True)
        counter = FlopCounterMode(display=False)
        with counter:
            ops.depthwise_conv2d(x, w, 1, d * (k - 1) // 2, d).sum().backward()
        return counter.get_total_flops()

    assert flops(True) == flops(False) > 0


def test_inputs_the_kernel_does_not_take_return_none():
    x = torch.randn(2, 4, 6, 6)
    cl = x.contiguous(memory_format=CL)
    assert native.depthwise_weight_grad(x.clone(), x, 3, 1) is None  # NCHW
    assert native.depthwise_weight_grad(cl.double(), cl.double(), 3, 1) is None  # float64
    assert native.depthwise_weight_grad(cl, cl, 4, 1) is None  # even kernel
    assert native.depthwise_weight_grad(cl, cl, 9, 1) is None  # larger than the kernel's limit
    assert native.depthwise_weight_grad(cl[:0], cl[:0], 3, 1) is None  # empty batch
    assert native.depthwise_weight_grad(cl.to("meta"), cl, 3, 1) is None  # gradient on another device
    assert native.depthwise_weight_grad(cl, cl, 3, 7) is None  # dilation beyond the map: no C int overflow either
    assert native.depthwise_weight_grad(cl, cl, 3, 2**31) is None


def test_turned_off_by_environment(fresh_state, monkeypatch):
    monkeypatch.setenv("CELLNAS_NATIVE", "0")
    assert not native.available()
    assert "CELLNAS_NATIVE=0" in native.unavailable_reason()
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=CL)
    assert native.depthwise_weight_grad(x, x, 5, 1) is None
    assert not list(fresh_state.iterdir())  # nothing compiled


def test_without_a_compiler_the_pytorch_path_computes_the_gradient(fresh_state, monkeypatch):
    monkeypatch.setenv("CELLNAS_NATIVE", "1")
    monkeypatch.setattr(native, "_compiler", lambda: None)
    assert not native.available() and "no C compiler" in native.unavailable_reason()
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=CL)
    w = torch.randn(4, 1, 5, 5, requires_grad=True)
    y = ops.depthwise_conv2d(x, w, 1, 2, 1)
    up = torch.randn_like(y)
    gw = torch.autograd.grad((y * up).sum(), w)[0]
    torch.testing.assert_close(gw.double(), _reference(up.contiguous(memory_format=CL), x, 5, 1),
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_a_failing_compiler_is_reported_not_raised(fresh_state, monkeypatch):
    monkeypatch.setenv("CELLNAS_NATIVE", "1")
    monkeypatch.setenv("CC", "false")  # exists everywhere POSIX, always fails
    assert not native.available()
    reason = native.unavailable_reason()
    assert reason.startswith("compiling the C kernels failed")
    assert not list(fresh_state.rglob("*.so"))  # no half-written library left behind
    # the failure is remembered: another process does not run the compiler again, and says how to retry
    native._lib, native._reason, native._tried = None, None, False
    monkeypatch.setattr(native.subprocess, "run", lambda *a, **k: pytest.fail("compiled again"))
    assert not native.available()
    assert "delete it to try again" in native.unavailable_reason()


@needs_kernel
def test_compiled_once_then_loaded_from_the_cache(fresh_state, monkeypatch):
    monkeypatch.setenv("CELLNAS_NATIVE", "1")
    assert native.available()
    libs = list((fresh_state / "native").glob("depthwise_wgrad-*.so"))
    assert len(libs) == 1
    stamp = libs[0].stat().st_mtime_ns
    native._lib, native._reason, native._tried = None, None, False
    assert native.available()
    assert libs[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=CL)
    torch.testing.assert_close(native.depthwise_weight_grad(x, x, 3, 2).double(), _reference(x, x, 3, 2),
                               rtol=1e-5, atol=1e-5)  # fmt: skip



@needs_kernel
def test_threads_loading_at_once_all_get_the_kernel(fresh_state, monkeypatch):
    monkeypatch.setenv("CELLNAS_NATIVE", "1")
    seen = []
    threads = [threading.Thread(target=lambda: seen.append((native.available(), native.unavailable_reason())))
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [(True, None)] * 4


@needs_kernel
def test_the_posix_threads_build_gives_the_same_sums(fresh_state, monkeypatch):
    """The build used where PyTorch does not run on GNU OpenMP (or the compiler has no -fopenmp)."""
    monkeypatch.setenv("CELLNAS_NATIVE", "1")
    monkeypatch.setattr(native, "_flag_sets", lambda: [["-O3"]])
    assert native.threading_model() == "pthreads"
    x = torch.randn(5, 16, 6, 7).contiguous(memory_format=CL)
    g = torch.randn(5, 16, 6, 7).contiguous(memory_format=CL)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 5):
            torch.set_num_threads(threads)
            torch.testing.assert_close(native.depthwise_weight_grad(g, x, 5, 2).double(), _reference(g, x, 5, 2),
                                       rtol=1e-5, atol=1e-5)  # fmt: skip
    finally:
        torch.set_num_threads(previous)


def _compiles_openmp(tmp_path) -> bool:
    src = tmp_path / "probe.c"
    src.write_text("int f(void) { int s = 0;\n#pragma omp parallel reduction(+:s)\n s += 1;\n return s; }\n")
    cmd = [native._compiler(), "-fopenmp", "-shared", "-fPIC", "-o", str(tmp_path / "probe.so"), str(src)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


@needs_kernel
def test_on_gnu_openmp_the_kernel_shares_pytorchs_threads(fresh_state, monkeypatch, tmp_path):
    if native._torch_libgomp() is None or not _compiles_openmp(tmp_path):
        pytest.skip("PyTorch does not run on GNU OpenMP here, or the compiler has no -fopenmp")
    monkeypatch.setenv("CELLNAS_NATIVE", "1")
    assert native.threading_model() == "openmp", native.unavailable_reason()
    # the kernel's OpenMP calls resolve to the very functions of torch's libgomp (no second thread pool)
    assert native._uses_torch_openmp(native._lib)


def test_without_pytorchs_libgomp_no_openmp_build_is_tried(monkeypatch):
    monkeypatch.setattr(native, "_torch_libgomp", lambda: None)
    assert all("-fopenmp" not in flags for flags in native._flag_sets())
    monkeypatch.setattr(native, "_torch_libgomp", lambda: object())
    assert "-fopenmp" in native._flag_sets()[0] and "-fopenmp" not in native._flag_sets()[-1]


@needs_kernel
def test_an_openmp_build_bound_to_another_runtime_is_not_used(fresh_state, monkeypatch, caplog, tmp_path):
    if native._torch_libgomp() is None or not _compiles_openmp(tmp_path):
        pytest.skip("PyTorch does not run on GNU OpenMP here, or the compiler has no -fopenmp")
    monkeypatch.setenv("CELLNAS_NATIVE", "1")
    monkeypatch.setattr(native, "_uses_torch_openmp", lambda lib: False)  # as if it had its own runtime
    built = []
    real_build = native._build
    monkeypatch.setattr(native, "_build", lambda cc, flags: built.append(flags) or real_build(cc, flags))
    with caplog.at_level("INFO", logger="cellnas.native"):
        assert native.threading_model() == "pthreads"
    assert sum("-fopenmp" in flags for flags in built) == 1  # rejected once, not retried with other flags
    assert "do not go to PyTorch's libgomp" in caplog.text


def test_cache_key_names_the_cpu(monkeypatch):
    cc = native._compiler() or "cc"
    here = native.library_path(cc, ["-O3"])
    monkeypatch.setattr(native, "_cpu_identity", lambda: "other-cpu")
    assert native.library_path(cc, ["-O3"]) != here  # a -march=native build is never loaded on another CPU
