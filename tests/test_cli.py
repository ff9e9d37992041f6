"""The CLI package: command registration, ``python -m gankit.cli`` and error-to-flag mapping."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from gankit import cli
from gankit.device import resolve_device
from gankit.errors import GankitError, ParameterError


def test_every_command_module_registers_its_subparser():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == [m.__name__.rsplit(".", 1)[1] for m in cli.COMMANDS]
    for name, p in sub.choices.items():
        assert p.get_default("func").__module__ == f"gankit.cli.{name}"


def test_parameter_error_is_shown_under_its_flag():
    assert cli.flag_name("batch_size") == "--batch-size"
    command = types.SimpleNamespace(FLAG_NAMES={"source": "SOURCE"})
    assert cli.flag_name("source", command) == "SOURCE"
    assert cli.flag_name("n", command) == "--n"
    err = ParameterError("batch_size", "expected a positive number, got 0")
    assert str(err) == "batch_size: expected a positive number, got 0"
    assert isinstance(err, GankitError) and isinstance(err, ValueError)


@pytest.mark.parametrize(
    "argv, line",
    [
        (["bench", "--steps", "0"], "gankit: error: --steps: expected an integer >= 1, got 0"),
        (["bench", "--warmup", "-1"], "gankit: error: --warmup: expected an integer >= 0, got -1"),
        (["bench", "--workload", "nope"], "gankit: error: --workload: unknown workload 'nope'"),
        (
            ["bench", "--workload", "attention", "--resolution", "1"],
            "gankit: error: --resolution: expected an integer >= 2, got 1",
        ),
    ],
)
def test_library_parameter_errors_become_flag_errors(capsys, argv, line):
    assert cli.main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1


def test_python_dash_m_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "gankit.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: gankit" in out and "bench" in out


@pytest.mark.parametrize(
    "device, message",
    [(None, "got NoneType"), (3, "got int"), ("tpu", "got 'tpu'")],
)
def test_resolve_device_names_the_parameter(device, message):
    with pytest.raises(
        ParameterError, match=f"^device: expected auto, cpu, cuda or a torch device, {message}"
    ):
        resolve_device(device)


def test_resolve_device_refuses_meta():
    """A meta device holds no values: a generator loaded there has shapes and no weights."""
    for device in ("meta", torch.device("meta")):
        with pytest.raises(ParameterError, match="^device: .*holds values, got 'meta'"):
            resolve_device(device)


def test_a_cuda_index_past_the_device_count_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    for name in ("cuda:2", torch.device("cuda", 5)):
        with pytest.raises(ParameterError, match=r"^device: cuda:\d requested but this "):
            resolve_device(name)
    with pytest.raises(ParameterError, match=r"CUDA devices are cuda:0\.\.1$"):
        resolve_device("cuda:2")
    # torchrun with more processes per node than GPUs: the rank past them is told so
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    for name in ("auto", "cuda"):
        with pytest.raises(ParameterError, match=r"^device: process of local rank 2 .*at most 2"):
            resolve_device(name, local_rank=2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_without_cuda_is_one_line():
    for device in ("cuda", "cuda:0", torch.device("cuda", 1)):
        with pytest.raises(ParameterError, match="^device: .*no CUDA device is available"):
            resolve_device(device)
