"""The compiled step's machinery (``train.compile``, :mod:`gankit.training.speed`):
:class:`CompileOrEager` runs a network compiled, with its spectral norms' power iteration as a
compiled graph of its own before each call and buffer writes kept out of the forward graph, or
eagerly (after a compile failure: one warning); each compiled call has its own TorchDynamo
cache (:func:`compile_isolated`); compiled artefacts are cached across runs
(:func:`enable_compile_cache`); channels-last activations can be forced (:data:`FORCES_LAYOUT`).
"""

from __future__ import annotations

import inspect
import os
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch._inductor.runtime.cache_dir_utils import default_cache_dir
from torch.utils import _pytree as pytree

from gankit.layers.spectral_norm import SNLayers, power_iterate_all
from gankit.layers.spectral_norm_batched import BatchedSpectralNorm
from gankit.metrics.stats_cache import cache_root

__all__ = [
    "CUDA_GRAPH_MODES",
    "FORCES_LAYOUT",
    "CompileOrEager",
    "compile_isolated",
    "compiled_power_iterations",
    "enable_compile_cache",
    "unwrap_ddp",
]

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
"""The modes that replay CUDA graphs, whose outputs live in a pool the next replay overwrites."""


def enable_compile_cache() -> None:
    """Inductor's FX-graph and AOTAutograd caches (on by default) under
    ``$GANKIT_CACHE/inductor``, unless ``TORCHINDUCTOR_CACHE_DIR`` names another folder than
    inductor's default. (Importing ``torch._inductor.config`` writes that default into the
    environment, so an unset variable and the default mean the same: nobody chose a folder.)"""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_root() / "inductor")


def compile_backend() -> str:
    """``torch.compile`` backend: ``$GANKIT_COMPILE_BACKEND`` or ``"inductor"`` (tests run the
    compiled path on CPU in seconds with ``aot_eager``)."""
    return os.environ.get("GANKIT_COMPILE_BACKEND") or "inductor"


def own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a code object of its own (same body, globals, defaults, keyword defaults and
    closure). TorchDynamo keeps compiled code, and counts recompilations against its limit, per
    code object: compiling such a copy gives the compiled frame a cache of its own."""
    copy = types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    copy.__kwdefaults__, copy.__qualname__ = fn.__kwdefaults__, fn.__qualname__
    return copy


ISOLATES_RECOMPILES = "isolate_recompiles" in inspect.signature(torch.compile).parameters
"""Whether this torch's ``torch.compile`` takes ``isolate_recompiles`` (2.13 does)."""


def compile_isolated(fn: Callable[..., Any], mode: str | None = None) -> Callable[..., Any]:
    """``torch.compile`` of ``fn`` (backend :func:`compile_backend`, static shapes) whose
    compiled code and recompile limit are its own, not shared with other compiles of the same
    code.

    Compiling a network itself would share the cache of its class's ``forward`` with every
    network of that class in the process, and spectral norm's ``parametrize`` makes a class per
    module, so the networks fail each other's guards: the fifth trainer in one process (a
    notebook, a test session) hit the recompile limit and ran eagerly. Hence an
    :func:`own_code` copy of ``fn``, plus ``isolate_recompiles`` where torch has it, which
    also isolates the frames TorchDynamo resumes in after a graph break (keyed by the original
    code: a reversible block's ``autograd.grad``, DDP's forward). Static shapes, because each
    call sees one batch size per run, and automatic dynamic shapes, tracked per file, line and
    name rather than per code object, would make sizes symbolic once any copy saw another."""
    isolate = {"isolate_recompiles": True} if ISOLATES_RECOMPILES else {}
    return torch.compile(
        own_code(fn), mode=mode, backend=compile_backend(), dynamic=False, **isolate
    )


FORCES_LAYOUT = (
    "force_layout_optimization"
    if hasattr(torch._inductor.config, "force_layout_optimization")
    else None
)
"""TorchInductor's switch that makes a graph's convolutions take channels-last inputs, chosen
per graph by a heuristic otherwise: on CUDA that heuristic keeps the default (NCHW) layout for a
training graph with a convolution whose input has at least twice its output channels and a
kernel wider than 1, as a generator's last convolution to RGB has, and for every backward graph
(it counts no ``convolution`` there). cuDNN, whose Hopper kernels are NHWC, then converts the
layout around each such convolution. ``None`` where this torch lacks it."""


def compiled_power_iterations() -> Callable[..., None]:
    """The spectral norms' power iteration
    (:func:`gankit.layers.spectral_norm.power_iterate_all`) compiled with a cache of its own
    (:func:`compile_isolated`): one graph per network (layer count and shapes) it is called
    with."""
    return compile_isolated(power_iterate_all)


def unwrap_ddp(module: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (else ``module`` itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class CompileOrEager:
    """Callable running ``module`` compiled (``torch.compile``) or eagerly, with the
    spectral norms batched when eager. On the first compile failure it warns once (one line)
    and runs eagerly from then on. Parameters are shared with ``module``.

    Args:
        module: the network (possibly DDP-wrapped) to run.
        name: used in the warning, e.g. ``"D"``.
        mode: a ``torch.compile`` mode (:func:`gankit.training.speed.compile_mode`) or ``None``
            for eager.
        batch_sn: batch the spectral norms in eager calls
            (:func:`gankit.training.speed.sn_batched`).
        reuse_frozen: let calls with frozen SN layers and no grad reuse ``W / sigma``.
        memory_budget: ``train.activation_memory_budget`` of the compiled calls.
        power_iterations: the compiled power iteration to run before each compiled call
            (:func:`compiled_power_iterations`; calls of one network may share it). A new one
            when not given.
        channels_last: compile the graphs with channels-last activations (``train.channels_last``)
            even where TorchInductor's heuristic would keep the default layout
            (:data:`FORCES_LAYOUT`).
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        mode: str | None,
        batch_sn: bool = False,
        reuse_frozen: bool = False,
        memory_budget: float = 1.0,
        power_iterations: Callable[..., None] | None = None,
        channels_last: bool = False,
    ):
        self.module, self.name, self.memory_budget = module, name, memory_budget
        self.inductor_options = {FORCES_LAYOUT: True} if channels_last and FORCES_LAYOUT else {}
        self.layers = SNLayers(unwrap_ddp(module))
        self.compiled: Any = None
        self.own_outputs = mode in CUDA_GRAPH_MODES
        if mode is not None:
            enable_compile_cache()
            self.compiled = compile_isolated(lambda *a, **kw: module(*a, **kw), mode)
            self.power_iterations = power_iterations or compiled_power_iterations()
        self.sn = BatchedSpectralNorm(unwrap_ddp(module), reuse_frozen) if batch_sn else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        advanced = False
        if self.compiled is not None:
            try:  # backward graphs compile here too, so that their failures land here as well
                # the spectral norms' power iteration runs as a graph of its own (always without
                # grad) before the forward, which reads u, v unchanged: its backward may then
                # recompute anything
                self.layers.advance(self.power_iterations)
                advanced = True
                with (
                    self.layers.frozen(),
                    torch._functorch.config.patch(
                        force_non_lazy_backward_lowering=True,
                        activation_memory_budget=self.memory_budget,
                    ),
                    torch._inductor.config.patch(self.inductor_options),
                ):
                    out = self.compiled(*args, **kwargs)
                # the step keeps outputs across later replays (G's fakes over the D steps, D's
                # logits for the log): copies own them (differentiable, a few copy kernels)
                return (
                    pytree.tree_map_only(torch.Tensor, torch.clone, out)
                    if self.own_outputs
                    else out
                )
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                msg = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
                warnings.warn(
                    f"torch.compile of {self.name} failed ({type(err).__name__}: {msg}); "
                    "running eagerly (set train.compile=false to skip compiling)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.compiled = None
        # eagerly; after a failed compile of the forward, without a second power iteration
        with self.layers.frozen(advanced):
            if self.sn is None:
                return self.module(*args, **kwargs)
            with self.sn.applied():
                return self.module(*args, **kwargs)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None
