"""Spectral norm of many layers at once: one batched power iteration per bucket of layers.

Each :class:`~gankit.layers.spectral_norm.SpectralNorm` layer normalises its own weight with
two matrix-vector products, two normalisations and a handful of small ops, so a network with
a dozen SN layers spends a few hundred tiny ops per forward and backward on it.
:class:`BatchedSpectralNorm` computes the same ``W / sigma`` for all layers of a network in a
few buckets: the weights of a bucket, reshaped to ``(out, fan_in)`` and zero-padded to the
bucket's largest ``(O, F)``, are stacked into ``W: (L, O, F)`` and each step runs once for the
whole bucket (``bmm``); the backward is one closed-form expression per bucket.

Zero padding changes nothing: padded columns of ``W`` give ``v`` entries ``0`` (``W^T u``
there is exactly 0), padded rows give ``u`` entries ``0``, and sums over zeros are exact, so
``u``, ``v`` and ``sigma`` are those of each layer alone (up to float summation order).

Per layer the maths is the per-layer path's (SNGAN, Miyato et al. 2018, Alg. 1): in training
mode ``v <- W^T u / max(||W^T u||, eps)``, ``u <- W v / max(||W v||, eps)``, then
``sigma = u^T W v`` (``= ||W v||^2 / max(||W v||, eps)``); otherwise ``sigma = u^T W v`` with
the stored vectors. ``u``, ``v`` are constants for the gradient, so with ``G = dL/dW_SN``::

    dL/dW = (G - <G, W_SN> u v^T) / sigma

``u``/``v`` stay per-layer buffers (same state dict), written with one ``_foreach_copy_`` per
bucket. A bucket is computed when the first of its layers reads its weight; its other layers
then advance their ``u``, ``v`` with it even if the forward does not use them (only an unused
head, e.g. ``model.aux_classifier`` with ``train.aux_weight = 0``, differs from the per-layer
path, and only in those vectors). Outside :meth:`BatchedSpectralNorm.applied` every layer runs
its own per-layer path (the reference).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from gankit.layers.spectral_norm import SpectralNorm, sn_holders

__all__ = ["MAX_PADDING", "BatchedSpectralNorm", "plan_buckets", "sn_raw_weights"]

MAX_PADDING = 1.0
"""A layer's slot in a bucket may hold up to ``MAX_PADDING`` zero entries per entry of its own
weight (or ``2**20`` zeros): more padding would cost more memory traffic than the ops saved."""
_SMALL = 2**20


def sn_raw_weights(module: nn.Module) -> list[torch.Tensor]:
    """The raw (un-normalised) weights of the SN layers inside ``module``."""
    return [h.original for h in sn_holders(module)]


def plan_buckets(sizes: list[tuple[int, int]], max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Group matrices of ``sizes`` ``(rows, cols)`` into buckets padded to their largest rows
    and cols: from the largest matrix down, each joins the first bucket in which no member's
    zero padding exceeds ``max_padding`` times its own size (or ``2**20`` entries), else opens
    a new one. Returns lists of indices into ``sizes``."""

    def fits(members: list[int]) -> bool:
        rows = max(sizes[j][0] for j in members)
        cols = max(sizes[j][1] for j in members)
        return all(
            rows * cols - r * c <= max(max_padding * r * c, _SMALL)
            for r, c in (sizes[j] for j in members)
        )

    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][0] * sizes[i][1], i))
    buckets: list[list[int]] = []
    for i in order:
        bucket = next((b for b in buckets if fits([*b, i])), None)
        if bucket is None:
            buckets.append([i])
        else:
            bucket.append(i)
    return sorted(sorted(b) for b in buckets)


def _normalize(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x / max(||x||, eps), ||x||, max(||x||, eps))`` along the last dim (``F.normalize``
    in three ops)."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    clamped = norm.clamp_min(eps)
    return x / clamped, norm, clamped


class _Bucket:
    """Layers whose ``W / sigma`` are computed together (see the module docstring).

    Layers are ordered in runs of equal weight shape; each run is stacked with one op.
    """

    def __init__(self, holders: list[parametrize.ParametrizationList], reuse_frozen: bool):
        self.reuse_frozen = reuse_frozen
        holders = sorted(holders, key=lambda h: tuple(h.original.shape))
        self.holders = holders
        self.sns: list[SpectralNorm] = [h[0] for h in holders]
        self.index = {id(sn): k for k, sn in enumerate(self.sns)}
        self.shapes = [tuple(h.original.shape) for h in holders]
        self.sizes = [(s[0], math.prod(s[1:])) for s in self.shapes]
        self.rows = max(o for o, _ in self.sizes)
        self.cols = max(f for _, f in self.sizes)
        self.runs: list[tuple[int, int]] = []  # (start, length) of equal-shape runs
        for k, shape in enumerate(self.shapes):
            if self.runs and self.shapes[self.runs[-1][0]] == shape:
                self.runs[-1] = (self.runs[-1][0], self.runs[-1][1] + 1)
            else:
                self.runs.append((k, 1))
        self.n_power_iterations, self.eps = self.sns[0].n_power_iterations, self.sns[0].eps
        self.out: list[torch.Tensor] | None = None  # W / sigma of the current pass
        self.reuse: tuple[tuple, list[torch.Tensor]] | None = None  # of a frozen no-grad pass
        self.vectors: dict[str, tuple[tuple, torch.Tensor]] = {}  # stacked u / v and versions
        self.gather: dict[tuple[str, torch.device], torch.Tensor] = {}

    # -- stacking and unstacking --------------------------------------------------------------
    def stack(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Per-layer tensors of the layers' weight shapes -> ``(L, O, F)`` zero-padded."""
        parts = []
        for start, n in self.runs:
            o, f = self.sizes[start]
            run = [
                t if t is not None else torch.zeros(self.shapes[start], device=self.device)
                for t in tensors[start : start + n]
            ]
            part = (torch.stack(run) if n > 1 else run[0]).reshape(n, o, f)
            if (o, f) != (self.rows, self.cols):
                part = F.pad(part, (0, self.cols - f, 0, self.rows - o))
            parts.append(part)
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def unstack(self, stacked: torch.Tensor) -> list[torch.Tensor]:
        """``(L, O, F)`` -> per-layer views of the layers' weight shapes (padding cut off)."""
        out, base = [], stacked.storage_offset()
        for k, shape in enumerate(self.shapes):
            inner = [math.prod(shape[i + 1 :]) for i in range(1, len(shape))]
            stride = (self.cols, *inner)
            out.append(stacked.as_strided(shape, stride, base + k * self.rows * self.cols))
        return out

    def _rows(self, name: str, stacked: torch.Tensor) -> list[torch.Tensor]:
        """``(L, 1, N)`` stacked u or v -> per-layer vectors (padding cut off)."""
        size = self.rows if name == "u" else self.cols
        lengths = [o if name == "u" else f for o, f in self.sizes]
        flat = stacked.view(-1)
        if any(n != size for n in lengths):
            key = (name, flat.device)
            if key not in self.gather:
                idx = [k * size + i for k, n in enumerate(lengths) for i in range(n)]
                self.gather[key] = torch.tensor(idx, device=flat.device)
            flat = flat.index_select(0, self.gather[key])
        return list(flat.split(lengths))

    def stacked_vectors(self, name: str) -> torch.Tensor:
        """``(L, 1, N)`` stack of the ``u`` (N = O) or ``v`` (N = F) buffers, zero-padded; reused
        while the buffers are unchanged since it was made or written."""
        buffers = [getattr(sn, name) for sn in self.sns]
        key = _versions(buffers)
        if name in self.vectors and self.vectors[name][0] == key:
            return self.vectors[name][1]
        size = self.rows if name == "u" else self.cols
        padded = [b if b.numel() == size else F.pad(b, (0, size - b.numel())) for b in buffers]
        stacked = torch.stack(padded).unsqueeze(1)
        self.vectors[name] = (key, stacked)
        return stacked

    def write_vectors(self, u: torch.Tensor, v: torch.Tensor) -> None:
        """Copy the stacked new ``u``, ``v`` into the layers' buffers (one multi-tensor op)."""
        us, vs = [sn.u for sn in self.sns], [sn.v for sn in self.sns]
        torch._foreach_copy_(us + vs, self._rows("u", u) + self._rows("v", v))
        self.vectors = {"u": (_versions(us), u), "v": (_versions(vs), v)}

    @property
    def device(self) -> torch.device:
        return self.holders[0].original.device

    # -- computing ---------------------------------------------------------------------------
    def weight(self, sn: SpectralNorm) -> torch.Tensor:
        if self.out is None:
            self.out = self._compute()
        return self.out[self.index[id(sn)]]

    def _compute(self) -> list[torch.Tensor]:
        modes = {sn.training for sn in self.sns}
        weights = [h.original for h in self.holders]
        if len(modes) > 1:  # layers toggled one by one: each runs its own (reference) path
            return [sn.normalized(w) for sn, w in zip(self.sns, weights)]
        training = modes.pop()
        no_grad = not torch.is_grad_enabled()
        if no_grad and not training and self.reuse is not None:
            if self.reuse[0] == _versions(weights) + self._vector_versions():
                return self.reuse[1]
        self.reuse = None
        out = list(_BucketSN.apply(self, training, *weights))
        if no_grad and self.reuse_frozen:
            self.reuse = (_versions(weights) + self._vector_versions(), out)
        return out

    def _vector_versions(self) -> tuple:
        return _versions([t for sn in self.sns for t in (sn.u, sn.v)])


def _versions(tensors: Sequence[torch.Tensor]) -> tuple:
    """Identity and in-place version of each tensor (Python attributes: no ops)."""
    return tuple((t.data_ptr(), t._version) for t in tensors)


def _row_major(shape: torch.Size) -> tuple[int, ...]:
    """The strides of a row-major (``torch.contiguous_format``) tensor of ``shape``."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _with_strides(t: torch.Tensor, strides: tuple[int, ...]) -> torch.Tensor:
    """``t`` itself if it has ``strides``, else a copy laid out with them: one ``clone``, in the
    row-major layout or, for a 4-D weight that is not row-major, the channels-last one."""
    if t.stride() == strides:
        return t
    row_major = strides == _row_major(t.shape) or t.dim() != 4
    copy = t.clone(memory_format=torch.contiguous_format if row_major else torch.channels_last)
    if copy.stride() == strides:
        return copy
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)


class _BucketSN(torch.autograd.Function):
    """``W_SN`` of every layer of a bucket; backward by the closed form of the module doc."""

    @staticmethod
    def forward(ctx: Any, bucket: _Bucket, training: bool, *weights: torch.Tensor) -> Any:
        with torch.autocast(bucket.device.type, enabled=False):
            w = bucket.stack(weights)
            dtype = w.dtype
            w = w.float()
            u = bucket.stacked_vectors("u")  # (L, 1, O)
            eps = bucket.eps
            if training:
                v = _normalize(torch.bmm(u, w), eps)[0]  # (L, 1, F)
                for _ in range(bucket.n_power_iterations - 1):
                    u = _normalize(torch.bmm(v, w.transpose(1, 2)), eps)[0]
                    v = _normalize(torch.bmm(u, w), eps)[0]
                u, norm, clamped = _normalize(torch.bmm(v, w.transpose(1, 2)), eps)  # (L, 1, O)
                sigma = norm * norm / clamped  # u^T W v = ||W v||^2 / max(||W v||, eps)
                bucket.write_vectors(u, v)
            else:
                v = bucket.stacked_vectors("v")  # (L, 1, F)
                sigma = torch.bmm(torch.bmm(u, w), v.transpose(1, 2))  # (L, 1, 1)
            w_sn = (w / sigma).to(dtype)
        ctx.bucket = bucket
        ctx.strides = [weight.stride() for weight in weights]
        ctx.save_for_backward(w_sn, u, v, sigma)
        return tuple(bucket.unstack(w_sn))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> Any:
        w_sn, u, v, sigma = ctx.saved_tensors
        bucket: _Bucket = ctx.bucket
        g = bucket.stack(grads).to(w_sn.dtype)
        inner = (g * w_sn).sum(dim=(1, 2), keepdim=True)  # <G, W_SN>, (L, 1, 1)
        grad = torch.baddbmm(g, u.transpose(1, 2) * inner, v, alpha=-1) / sigma
        # each gradient laid out exactly like its weight: DDP's gradient buckets expect the
        # parameter's strides, also in size-1 dimensions, where a view of the padded stack (a
        # (1, 32) slice of width 288) or a channels-last 1x1 kernel differ while "contiguous"
        out = [
            _with_strides(gw, strides) if g_in is not None else None
            for gw, g_in, strides in zip(bucket.unstack(grad), grads, ctx.strides)
        ]
        return (None, None, *out)


class BatchedSpectralNorm:
    """The spectral norms inside ``module``, computed bucket by bucket while :meth:`applied`.

    Args:
        module: the network (its SN layers are found once, here).
        reuse_frozen: a pass without grad whose layers are all frozen (not training) reuses
            the ``W / sigma`` of the previous pass without grad when no weight, ``u`` or ``v``
            of the bucket has changed since (tensor versions); keeps one copy of the
            normalised weights between passes.
        max_padding: see :data:`MAX_PADDING`.

    Example: ``with BatchedSpectralNorm(D).applied(): logits = D(x, y)``.
    """

    def __init__(
        self, module: nn.Module, reuse_frozen: bool = False, max_padding: float = MAX_PADDING
    ):
        groups: dict[tuple, list[parametrize.ParametrizationList]] = {}
        for h in sn_holders(module):  # only layers with the same settings share a bucket
            w = h.original
            groups.setdefault((h[0].n_power_iterations, h[0].eps, w.dtype, w.device), []).append(h)
        self.buckets: list[_Bucket] = []
        for group in groups.values():
            shapes = [tuple(h.original.shape) for h in group]
            sizes = [(s[0], math.prod(s[1:])) for s in shapes]
            for members in plan_buckets(sizes, max_padding):
                self.buckets.append(_Bucket([group[i] for i in members], reuse_frozen))

    def forget(self) -> None:
        """Drop the tensors kept between passes (stacked ``u``/``v``, a frozen pass's
        ``W / sigma``): the next pass computes them from the layers' buffers and weights. A CUDA
        graph capture starts with this, so that it records that computation instead of reading
        a tensor of an earlier eager pass."""
        for bucket in self.buckets:
            bucket.vectors, bucket.reuse = {}, None

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the SN layers of the module return the batched ``W / sigma``."""
        for bucket in self.buckets:
            for sn in bucket.sns:
                sn.batch = bucket
        try:
            yield
        finally:
            for bucket in self.buckets:
                bucket.out = None
                for sn in bucket.sns:
                    sn.batch = None
