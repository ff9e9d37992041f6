"""DDP on CPU (gloo, 2 processes): gradients and BN statistics equal one process on the
combined batch, through gankit's cross-replica BN and the trainer's G-step structure."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from training_fixtures import TINY, tiny_cfg, tiny_data

from gankit.config import Config, apply_overrides
from gankit.losses import g_loss
from gankit.models import build
from gankit.training import distributed
from gankit.training.loop import Trainer
from gankit.training.loss_meter import LOSS_KEYS, TrainingDivergedError

MODEL = [o for o in TINY if o.startswith("model.")]
B = 4  # per rank


def _inputs():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2 * B, 8, generator=gen), torch.randint(3, (2 * B,), generator=gen)


def _one_step(G, D, z, y):
    """The trainer's G step: D frozen, hinge G loss, backward."""
    D.requires_grad_(False)
    loss = g_loss("hinge", D(G(z, y), y))
    loss.backward()


def _build():
    torch.manual_seed(0)
    return build(apply_overrides(Config(), MODEL).model)


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    info, device = distributed.setup("cpu")
    G, D = _build()
    distributed.convert_batchnorm(G)
    G_ddp = distributed.wrap(G, info, device)
    z, y = _inputs()
    _one_step(G_ddp, D, z[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B])
    if rank == 0:
        torch.save(
            {
                "grads": {n: p.grad for n, p in G.named_parameters()},
                "buffers": dict(G.named_buffers()),
            },
            out,
        )
    # both ranks tear gloo down together, and the DDP wrapper (its reducer holds the process
    # group) goes first: a reducer that outlives the group destroys it holding the GIL, which
    # hung or aborted a rank's teardown here (distributed.cleanup)
    torch.distributed.barrier()
    del G_ddp
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_with_deadline(fn, args: tuple, nprocs: int, seconds: float) -> None:
    """``mp.spawn`` that fails (and kills the workers) instead of hanging past ``seconds``."""
    ctx = mp.spawn(fn, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + seconds
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            raise AssertionError(f"DDP workers did not finish within {seconds} s")


def test_ddp_gloo_equals_single_process_on_combined_batch(tmp_path):
    out = str(tmp_path / "rank0.pt")
    _spawn_with_deadline(_worker, (_free_port(), out), nprocs=2, seconds=180)
    ddp = torch.load(out, weights_only=True)

    G, D = _build()
    _one_step(G, D, *_inputs())
    n_bn = 0
    for name, p in G.named_parameters():
        # atol: a conv bias right before a batch norm has a true gradient of 0; both sides
        # hold float noise of ~1e-6 there
        torch.testing.assert_close(ddp["grads"][name], p.grad, rtol=1e-4, atol=1e-5)
    for name, b in G.named_buffers():
        n_bn += name.endswith("running_var")
        torch.testing.assert_close(ddp["buffers"][name], b, rtol=1e-5, atol=1e-6)
    assert n_bn > 0


def test_convert_batchnorm_covers_conditional_bn():
    G, _ = _build()
    distributed.convert_batchnorm(G)
    bns = [m for m in G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, distributed.CrossReplicaBatchNorm) for m in bns)
    G2, _ = _build()
    G2.load_state_dict(G.state_dict())  # same keys: checkpoints stay loadable by plain G


def test_single_process_setup_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info, device = distributed.setup("cpu")
    assert not info.enabled and info.is_main and device.type == "cpu"


def _nan_worker(rank: int, port: int, data: str, out: str) -> None:
    """Rank 1 alone sees a NaN loss; every rank must stop with TrainingDivergedError."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    trainer = Trainer(tiny_cfg(Path(data)), None, quiet=True)
    losses = {k: torch.zeros(()) for k in LOSS_KEYS}  # what train_iteration returns
    if rank == 1:
        losses["loss_G"] = torch.tensor(float("nan"))
    trainer.meter.add(losses)
    try:
        trainer.check_finite()
        result = "continued"
    except TrainingDivergedError:
        result = "stopped"
    Path(f"{out}.{rank}").write_text(result)
    del trainer  # its DDP wrappers before the process group (distributed.cleanup)
    distributed.cleanup()


def test_nan_on_one_rank_stops_every_rank(tmp_path):
    """The finite flag is all-reduced before anyone raises: no rank trains on (or waits in a
    collective) after another one stopped."""
    data = tiny_data(tmp_path / "d.npz")
    out = str(tmp_path / "result")
    _spawn_with_deadline(_nan_worker, (_free_port(), str(data), out), nprocs=2, seconds=400)
    assert [open(f"{out}.{r}").read() for r in (0, 1)] == ["stopped", "stopped"]


def test_a_collective_whose_peer_died_is_one_line(tmp_path, monkeypatch, capsys):
    """A process of the job killed: the others' next collective fails inside gloo (a plain
    RuntimeError) or NCCL; each survivor says so in one line, not a torch traceback."""
    import gankit.training as training
    from gankit.cli import main

    gloo = (
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
        "[127.0.0.1]:55941: Connection reset by peer. This is typically caused by a remote "
        "worker hanging or bugs in the application.\nmore lines"
    )

    class PeerGone:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(gloo)

    monkeypatch.setattr(training, "from_env", lambda: distributed.DistInfo(rank=1, world_size=2))
    monkeypatch.setattr(training, "Trainer", PeerGone)
    sets = [a for item in TINY for a in ("--set", item)]
    data = tiny_data(tmp_path / "d.npz")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), *sets]) == 2
    assert capsys.readouterr().err == (
        f"gankit: error: rank 1: a collective with the job's other processes failed "
        f"({gloo.splitlines()[0][:160]}); one of them stopped or failed: see its output, then "
        "resume the run\n"
    )
