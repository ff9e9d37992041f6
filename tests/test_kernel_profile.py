"""benchmarks/kernel_profile.py: kernels grouped by kind and summed per iteration."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from kernel_profile import copy_launchers, kernel_table, kind_of  # noqa: E402


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "conv_matmul"),
        ("cudnn::bn_fw_tr_1C11_kernel_NCHW", "batch_norm"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>", "attention"),
        ("triton_poi_fused_add_mul_0", "triton"),
        ("triton_red_fused_native_batch_norm_1", "triton"),
        ("void at::native::vectorized_elementwise_kernel<4>", "other"),
        ("void at::native::elementwise_kernel<128, 4, direct_copy_kernel_cuda>", "layout_copy"),
        ("void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16>", "layout_copy"),
        ("Memcpy DtoD (Device -> Device)", "layout_copy"),
    ],
)
def test_kernel_kinds(name: str, kind: str) -> None:
    assert kind_of(name) == kind


def test_kernel_table_sums_per_iteration() -> None:
    kernels = [("triton_a", 100.0), ("gemm_b", 300.0), ("triton_a", 50.0), ("copy_c", 10.0)]
    table = kernel_table(kernels, iters=2, top=2)
    assert table["kernel_ms_per_iter"] == pytest.approx(460.0 / 1e3 / 2)
    assert table["launches_per_iter"] == 2.0
    assert table["ms_per_iter_by_kind"] == pytest.approx(
        {"conv_matmul": 0.15, "triton": 0.075, "other": 0.005}
    )
    assert list(table["ms_per_iter_by_kind"]) == ["conv_matmul", "triton", "other"]
    assert [k["name"] for k in table["top_kernels"]] == ["gemm_b", "triton_a"]
    assert table["top_kernels"][1] == {
        "name": "triton_a",
        "kind": "triton",
        "ms_per_iter": 0.075,
        "calls_per_iter": 1.0,
    }


def test_copy_launchers_rank_ops_by_their_copy_time() -> None:
    ops = [
        ("aten::copy_", "shapes [[4, 8]]", [("direct_copy_kernel", 30.0)]),
        ("aten::convolution", "shapes [[2, 3]]", [("nchwToNhwcKernel", 5.0), ("sm90_xmma", 99.0)]),
        ("aten::copy_", "shapes [[4, 8]]", [("direct_copy_kernel", 10.0)]),
        ("aten::mm", "shapes [[1]]", [("gemm", 50.0)]),  # launched no copy: not listed
    ]
    assert copy_launchers(ops, iters=2, top=5) == [
        {"op": "aten::copy_", "inputs": "shapes [[4, 8]]", "ms_per_iter": 0.02,
         "calls_per_iter": 1.0},
        {"op": "aten::convolution", "inputs": "shapes [[2, 3]]", "ms_per_iter": 0.0025,
         "calls_per_iter": 0.5},
    ]  # fmt: skip
