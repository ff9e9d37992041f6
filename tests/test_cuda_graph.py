"""The training iteration as one CUDA graph (``train.cuda_graph``).

On CPU the graph's bookkeeping is checked with a backend that "replays" by running the
recorded iteration again on the static input buffers, which is what a CUDA graph's kernels do:
warm-up count, the static buffers filled from the data stream in order, the fallback to eager
on a failed capture, a new capture after a checkpoint is loaded. The same losses and weights as
the plain eager run, bitwise. The real capture (``torch.cuda.graph``) is checked against eager
iterations in the GPU test at the end (``-m gpu``).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from gankit import checkpoint as ckpt_io
from gankit.bench import benchmark, synthetic_dataset
from gankit.config import Config, ConfigError, apply_overrides, validate
from gankit.errors import GankitError
from gankit.training import speed
from gankit.training.cuda_graph import WARMUP, IterationGraph
from gankit.training.loop import Trainer
from gankit.training.state import capture

TINY = [
    "model.arch=dcgan",
    "model.resolution=28",
    "model.channels=1",
    "model.n_classes=3",
    "model.dim_z=8",
    "model.G_ch=4",
    "model.D_ch=4",
    "model.G_attn=[]",
    "model.D_attn=[]",
    "train.batch_size=4",
    "train.n_D=2",
    "train.device=cpu",
    "train.diffaug=color,translation",  # draws from the latent generator inside the iteration
    "train.d_measurement=conv_noise:sigma=1,noise=0.1",  # so does instance noise
    "train.d_measurement_fade=3",  # whose strength changes by step (a scalar the graph reads)
    "train.ema_decay=0.9",
]
KEYS = ("loss_D", "loss_G", "D_real", "D_fake")

pytestmark = pytest.mark.usefixtures("one_thread")


class CallReplay:
    """A graph backend whose replay runs the recorded iteration again (on CPU)."""

    def __init__(self) -> None:
        self.captures = 0

    def capture(self, fn):
        self.fn = fn
        self.captures += 1

    def replay(self):
        return self.fn()


def _trainer(overrides: list[str] = (), backend=None) -> Trainer:
    cfg = apply_overrides(Config(), TINY + list(overrides))
    trainer = Trainer(cfg, None, dataset=synthetic_dataset(cfg, 48), quiet=True)
    if backend is not None:
        trainer.graph = IterationGraph(
            trainer.batches,
            [trainer.opt_G, trainer.opt_D],
            trainer.gen,
            backend=backend,
            forget=trainer._forget_sn_tensors,
        )
    return trainer


def _losses(trainer: Trainer, n: int) -> list[torch.Tensor]:
    return [torch.stack([out[k] for k in KEYS]) for out in (trainer.train_iteration()
                                                             for _ in range(n))]  # fmt: skip


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    nets = (trainer.G, trainer.D, trainer.ema.module)
    return [t for net in nets for t in (*net.parameters(), *net.buffers())]


def _assert_equal(a: Trainer, b: Trainer, losses_a, losses_b) -> None:
    for la, lb in zip(losses_a, losses_b, strict=True):
        assert torch.equal(la, lb)
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        assert torch.equal(wa, wb)
    sa, sb = capture(a), capture(b)
    torch.testing.assert_close(sa["sampler"], sb["sampler"], rtol=0, atol=0)  # same batches
    assert torch.equal(a.gen.get_state(), b.gen.get_state())


def test_replayed_iterations_equal_eager_ones():
    backend = CallReplay()
    graphed, eager = _trainer(backend=backend), _trainer()
    n = WARMUP + 4
    losses_g = _losses(graphed, n)
    assert graphed.graph.captured and backend.captures == 1
    assert graphed.graph.n_batches == 2  # one real batch per D step
    _assert_equal(graphed, eager, losses_g, _losses(eager, n))
    # the replayed iteration read the static buffers, which hold the last batches drawn
    x_last = graphed.graph.static[-1][0]
    assert x_last.dtype == torch.uint8 and x_last.shape == (4, 1, 28, 28)


def test_replayed_losses_are_owned_copies():
    graphed = _trainer(backend=CallReplay())
    outs = [graphed.train_iteration() for _ in range(WARMUP + 2)]
    assert outs[-1]["loss_D"] is not outs[-2]["loss_D"]


def test_ema_start_does_not_delay_the_capture():
    """The EMA update (a copy of G before ``train.ema_start``, an average after) runs after
    each replay, outside the graph: the capture comes after the warm-up whatever the step."""
    backend = CallReplay()
    start = f"train.ema_start={WARMUP + 3}"
    graphed, eager = _trainer([start], backend), _trainer([start])
    losses = _losses(graphed, WARMUP + 1)
    assert graphed.graph.captured
    losses += _losses(graphed, 4)  # across ema_start
    _assert_equal(graphed, eager, losses, _losses(eager, WARMUP + 5))


def test_load_drops_the_graph_and_captures_again(tmp_path):
    backend = CallReplay()
    graphed = _trainer(backend=backend)
    _losses(graphed, WARMUP + 1)
    path = ckpt_io.save_checkpoint(
        tmp_path, "step", graphed.weights(), graphed.state_dict(), graphed.cfg, meta={}
    )
    more = _losses(graphed, 2)
    graphed.load(path)
    assert not graphed.graph.captured and graphed.graph.warm == 0
    again = _losses(graphed, WARMUP + 2)
    assert graphed.graph.captured and backend.captures == 2
    for a, b in zip(more, again[:2]):  # the same two steps after the checkpoint
        assert torch.equal(a, b)


class FailingCapture(CallReplay):
    def capture(self, fn):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")


def test_failed_capture_warns_once_and_runs_eagerly_on_the_same_batches():
    graphed, eager = _trainer(backend=FailingCapture()), _trainer()
    n = WARMUP + 3
    with pytest.warns(RuntimeWarning, match="CUDA graph of the training iteration disabled") as w:
        losses = _losses(graphed, n)
    assert len(w) == 1 and "RuntimeError: operation not permitted" in str(w[0].message)
    assert graphed.graph.disabled and not graphed.graph.captured
    _assert_equal(graphed, eager, losses, _losses(eager, n))


class FailingAfterBackward(CallReplay):
    """A capture that fails in G's optimizer step, after the iteration's backward passes (the
    recorded kernels never ran: the gradients they allocated hold garbage on CUDA)."""

    def __init__(self, opt: torch.optim.Optimizer) -> None:
        super().__init__()
        self.opt = opt

    def capture(self, fn):
        def fail(*args, **kwargs):
            raise RuntimeError("operation not permitted when stream is capturing")

        self.opt.step, step = fail, self.opt.step
        try:
            fn()
        finally:
            self.opt.step = step


def test_a_capture_failing_after_backward_leaves_no_gradients():
    """The eager fallback starts from no gradients, as every iteration does (each optimizer
    step frees its own): it would otherwise add its gradients to the failed capture's."""
    graphed = _trainer()
    graphed.graph = IterationGraph(
        graphed.batches, [graphed.opt_G, graphed.opt_D], graphed.gen,
        backend=FailingAfterBackward(graphed.opt_G), forget=graphed._forget_sn_tensors,
    )  # fmt: skip
    starts = []
    iteration = graphed._iteration

    def recording():
        nets = (graphed.G, graphed.D)
        starts.append(all(p.grad is None for net in nets for p in net.parameters()))
        return iteration()

    graphed._iteration = recording
    with pytest.warns(RuntimeWarning, match="disabled .*operation not permitted"):
        _losses(graphed, WARMUP + 2)
    assert graphed.graph.disabled and len(starts) == WARMUP + 3  # + the failed capture's call
    assert all(starts)


class TracingCapture(CallReplay):
    """Runs the Python of the iteration at capture, as ``torch.cuda.graph`` does."""

    def capture(self, fn):
        super().capture(fn)
        fn()


def test_iteration_reading_fewer_batches_than_staged_is_not_graphed():
    """The iteration must read every staged batch (else its data order would drift)."""
    graphed = _trainer(backend=TracingCapture())
    _losses(graphed, WARMUP)
    graphed.graph.n_batches += 1  # as if the warm-up had drawn one more
    with pytest.warns(RuntimeWarning, match="read 2 of 3 batches"):
        graphed.train_iteration()
    assert graphed.graph.disabled


def test_cuda_graph_value_is_validated():
    cfg = apply_overrides(Config(), ["train.cuda_graph=sometimes"])
    with pytest.raises(ConfigError, match="train.cuda_graph must be auto, true or false"):
        validate(cfg)


def test_auto_is_off_on_cpu_and_true_there_is_a_clear_error():
    assert _trainer().graph is None
    with pytest.raises(GankitError, match=r"train.cuda_graph=true: needs a CUDA device, not cpu"):
        _trainer(["train.cuda_graph=true"])


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["train.r1_gamma=1"], "lazy R1/R2"),
        (["train.loss=wgan-gp"], "wgan-gp"),
        (["train.compile=reduce-overhead"], "replays CUDA graphs itself"),
    ],
)
def test_blockers_name_the_setting(overrides, reason):
    t = apply_overrides(Config(), overrides).train
    cuda = torch.device("cuda")
    assert any(reason in b for b in speed.cuda_graph_blockers(t, cuda, False))
    assert not speed.cuda_graph(t, cuda, False)  # auto: eager, silently
    assert speed.cuda_graph_blockers(Config().train, cuda, True) == ["not under DDP"]
    assert speed.cuda_graph(Config().train, cuda, False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("preset", ["mnist-sagan", "biggan-cifar"])
def test_cuda_graph_replay_matches_eager_on_gpu(preset):
    """The captured iteration against eager iterations from the same state: losses within
    bf16 noise (the same kernels run; cuDNN may pick other algorithms under capture)."""
    from gankit.config import load_preset

    def trainer(graph: str) -> Trainer:
        cfg = load_preset(preset, ["train.device=cuda", "train.compile=false",
                                   f"train.cuda_graph={graph}", "train.batch_size=16"])  # fmt: skip
        return Trainer(cfg, None, dataset=synthetic_dataset(cfg, 64), quiet=True)

    graphed, eager = trainer("true"), trainer("false")
    n = WARMUP + 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture fails the test
        losses_g = _losses(graphed, n)
    assert graphed.graph.captured
    losses_e = _losses(eager, n)
    for a, b in zip(losses_g, losses_e):
        torch.testing.assert_close(a, b, rtol=5e-2, atol=5e-2)
    for wa, wb in zip(graphed.G.parameters(), eager.G.parameters()):
        torch.testing.assert_close(wa, wb, rtol=1e-2, atol=1e-2)
    assert benchmark("cifar", "cuda", steps=2, warmup=1, overrides=[
        "train.compile=false", "model.G_ch=8", "model.D_ch=8"])["flags"]["cuda_graph"]  # fmt: skip


class CheckForgotten(CallReplay):
    """Asserts at capture that no batched-SN tensor of an eager pass is kept."""

    def capture(self, fn):
        trainer = self.trainer
        buckets = [b for call in (trainer.G_fn, trainer.D_fn, trainer.G_fake, trainer.D_frozen)
                   for b in call.sn.buckets]  # fmt: skip
        assert buckets and all(b.vectors == {} and b.reuse is None for b in buckets)
        super().capture(fn)


def test_capture_starts_without_tensors_of_eager_passes():
    """The batched SN keeps the stacked ``u``/``v`` of the last pass for the next one: a graph
    recording a read of that tensor would replay it forever (stale, later freed)."""
    backend = CheckForgotten()
    trainer = _trainer(["train.sn_batched=true", "model.G_sn=true"], backend)
    backend.trainer = trainer
    eager = _trainer(["train.sn_batched=true", "model.G_sn=true"])
    losses = _losses(trainer, WARMUP)
    assert any(b.vectors for b in trainer.D_fn.sn.buckets)  # kept between eager passes
    losses += _losses(trainer, 2)
    assert trainer.graph.captured
    _assert_equal(trainer, eager, losses, _losses(eager, WARMUP + 2))
