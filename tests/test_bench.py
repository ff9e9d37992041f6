"""``gankit bench``: JSON keys, parameter counts and errors (no test looks at the timings)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from gankit.bench import WORKLOADS, RSSPeak, benchmark, synthetic_dataset, warm_trainer
from gankit.cli import main
from gankit.config import load_preset
from gankit.errors import GankitError, ParameterError
from gankit.models import build, count_params

TINY = ["model.G_ch=4", "model.D_ch=4", "model.dim_z=16", "train.n_D=2"]
TRAIN_KEYS = {
    "s_per_iter", "G_steps_per_s", "real_imgs_per_s", "peak_mem_GiB", "params_G", "params_D",
    "device", "torch", "flags", "workload", "batch_size", "n_D", "ops_per_iter", "cpu_s_per_iter",
    "view_ops_per_iter", "host_syncs_per_iter", "compile_s", "capture_s", "peak_mem_kind",
    "saved_activations_MiB",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def _cli_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    assert main(["bench", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # --json: one line
    return json.loads(out)


def test_bench_training_json(capsys):
    args = ["--workload", "cifar", "--device", "cpu", "--steps", "1", "--warmup", "0"]
    sets = [a for s in TINY for a in ("--set", s)]
    result = _cli_json(capsys, *args, *sets, "--batch-size", "3")
    assert TRAIN_KEYS <= set(result)
    assert result["workload"] == "cifar" and result["preset"] == WORKLOADS["cifar"]
    assert (result["batch_size"], result["n_D"]) == (3, 2)
    G, D = build(load_preset("biggan-cifar", TINY).model)
    assert (result["params_G"], result["params_D"]) == (count_params(G), count_params(D))
    assert result["s_per_iter"] > 0 and result["peak_mem_GiB"] > 0
    assert result["G_steps_per_s"] == pytest.approx(1 / result["s_per_iter"])
    assert result["real_imgs_per_s"] == pytest.approx(3 * 2 / result["s_per_iter"])
    assert result["device"] and result["torch"] == torch.__version__
    assert result["flags"]["amp"] == "fp32" and result["flags"]["optimizer"] == "fused"
    assert result["flags"]["channels_last"] is True and result["flags"]["compile"] is False
    assert result["compile_s"] is None and "ops_top" not in result
    assert result["host_syncs_per_iter"] == 0  # measured: no .item() etc. in the iteration
    assert 0 < result["view_ops_per_iter"] < result["ops_per_iter"]


def test_bench_ops_detail_and_op_count_follow_the_levers(capsys):
    args = ["--workload", "cifar", "--device", "cpu", "--steps", "1", "--warmup", "1"]
    sets = [a for s in TINY for a in ("--set", s)]
    fast = _cli_json(
        capsys, *args, *sets, "--set", "train.sn_batched=true", "--batch-size", "2",
        "--ops-detail", "5",
    )  # fmt: skip
    assert len(fast["ops_top"]) == 5 and sum(fast["ops_top"].values()) <= fast["ops_per_iter"]
    counts = list(fast["ops_top"].values())
    assert counts == sorted(counts, reverse=True)
    per_layer = benchmark("cifar", "cpu", 1, 1, [*TINY, "train.sn_batched=false"])
    assert per_layer["ops_per_iter"] > fast["ops_per_iter"]  # the per-layer SN reference


def test_bench_saved_activations_follow_checkpointing():
    """The activations held for backward: lower when the blocks recompute theirs."""
    plain = benchmark("cifar", "cpu", 1, 0, [*TINY, "train.batch_size=2"])
    recomputed = benchmark(
        "cifar", "cpu", 1, 0, [*TINY, "train.batch_size=2", "train.checkpoint_activations=true"]
    )
    assert 0 < recomputed["saved_activations_MiB"] < 0.5 * plain["saved_activations_MiB"]


def test_bench_flags_follow_overrides():
    result = benchmark(
        "cifar", "cpu", 1, 0, [*TINY, "train.channels_last=false", "train.fused_optim=false"]
    )
    assert result["flags"]["channels_last"] is False
    assert result["flags"]["optimizer"] == "for-loop"


def test_bench_attention_json(capsys):
    args = ["--workload", "attention", "--device", "cpu", "--steps", "1", "--warmup", "1"]
    result = _cli_json(capsys, *args, "--resolution", "8", "--channels", "16", "--batch-size", "2")
    assert result["workload"] == "attention" and result["variant"] == "biggan"
    assert (result["N"], result["M"]) == (64, 16)  # pooled keys: M = N / 4
    for path in ("fused", "reference"):
        assert {"s_per_iter", "peak_mem_GiB"} <= set(result[path])
    assert result["max_abs_diff"] < 1e-4  # the two paths compute the same layer
    sagan = benchmark(
        "attention", "cpu", 1, 0, ["model.attn_type=sagan"], resolution=8, channels=16, batch_size=2
    )
    assert sagan["variant"] == "sagan" and sagan["M"] == 64


def test_rss_peak_sees_a_large_allocation():
    with RSSPeak() as rss:
        buf = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        time.sleep(0.05)  # let the 1 ms sampler see it even on a loaded machine
        del buf
    assert rss.growth is not None and rss.growth >= 48 * 2**20


def test_synthetic_dataset_matches_the_model():
    cfg = load_preset("biggan-cifar")
    ds = synthetic_dataset(cfg, 5)
    assert ds.x.shape == (5, 3, 32, 32) and ds.x.dtype.name == "uint8"
    assert ds.n_classes == 10 and ds.y.max() < 10


@pytest.mark.parametrize(
    ("workload", "overrides", "kwargs"),
    [
        ("nope", [], {}),
        ("cifar", [], {"steps": 0}),
        ("attention", [], {"steps": 0}),
        ("attention", [], {"warmup": -1}),
        ("attention", [], {"resolution": 1}),
        ("cifar", ["train.bogus=1"], {}),
        ("cifar", [], {"ops_detail": -1}),
        ("mnist-sagan", [], {"batch_size": 0}),
        ("cifar", [], {"resolution": 7}),  # an attention-only setting
    ],
)
def test_bench_bad_input(workload, overrides, kwargs):
    with pytest.raises(GankitError):
        benchmark(workload, "cpu", overrides=overrides, **kwargs)


def test_bench_attention_refuses_settings_it_does_not_use(capsys):
    args = ["bench", "--workload", "attention", "--device", "cpu", "--set", "train.batch_size=4"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "gankit: error: --set: the attention workload uses only model.attn_k, model.attn_type, "
        "model.sn_eps, train.amp (batch: --batch-size), not 'train.batch_size=4'\n"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size: expected an integer >= 1, got 0"),
        ({"data": "/nonexistent"}, "data: applies to the training workloads, not attention"),
        (  # 2 x 16 x 100,000**2 fp32 values: 1.28 TB per copy
            {"resolution": 100_000, "channels": 16, "batch_size": 2},
            r"resolution: the attention input \(2, 16, 100000, 100000\) needs ~\d+\.\d GiB, .* "
            "free; lower --resolution, --channels or --batch-size",
        ),
    ],
)
def test_bench_attention_names_bad_sizes_and_data(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        benchmark("attention", "cpu", **kwargs)


def test_bench_cli_bad_workload_exits_2(capsys):
    assert main(["bench", "--workload", "nope", "--device", "cpu"]) == 2
    assert "valid:" in capsys.readouterr().err


def test_warm_trainer_is_a_workload_without_the_cuda_graph():
    """The profiling scripts' trainer: the preset with the overrides, the graph off, warmed up."""
    trainer = warm_trainer("dcgan-mnist", ["train.batch_size=4"], 2, device="cpu")
    assert trainer.step == 2 and trainer.run is None
    assert trainer.cfg.preset == "dcgan-mnist" and trainer.cfg.train.batch_size == 4
    assert trainer.cfg.train.cuda_graph is False and trainer.graph is None
