"""Attention layers: SAGAN / BigGAN self-attention and the non-local block family.

Papers:
- Wang et al. 2018, "Non-local Neural Networks", https://arxiv.org/abs/1711.07971 (Eq. 1-6).
- Zhang et al. 2019, "Self-Attention GANs", https://arxiv.org/abs/1805.08318 (Sec. 3).
- Brock et al. 2019, "Large Scale GAN Training" (BigGAN), https://arxiv.org/abs/1809.11096.

Every layer has two numerically equal paths: :func:`attention_reference` builds the explicit
``N x M`` score matrix and its softmax; :func:`attention` (the default) calls
``F.scaled_dot_product_attention`` (SDPA) with ``scale=1.0`` because these papers' scores are
unscaled dot products (SDPA would otherwise divide by ``sqrt(d)``). SDPA's fused kernels
(flash on CPU, flash / memory-efficient on CUDA) never store the ``N x M`` matrix, but the CPU
flash kernel only engages when q, k and v share a head dim; with a wider v (BigGAN: C/2 vs C/8)
it silently falls back to the math path, which does (measured: +6.2 GB at N = 16,384).
:func:`attention` therefore zero-pads the narrower side to the wider width: padding q and k adds
zero terms to every dot product, so the scores are unchanged; padding v adds zero output columns,
which are sliced off. Padding was chosen over splitting v into q-width chunks (one SDPA call
per chunk): both cost the same matmul FLOPs, ``N M (d_qk + d_v)``, and both keep memory
``O((N + M) d)``, but chunking recomputes the softmax ``d_v / d_qk`` times. Measured on CPU (2
cores, fp32, fwd + bwd, B = 8, N = 16,384, M = 4,096, d_qk = 8, d_v = 32): padding +109 MiB,
6.5 s; chunking +94 MiB (it saves the padded copy of q), 23.6 s; SDPA on the unpadded
tensors (math fallback) +6,222 MiB, 58.6 s.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from gankit.errors import ParameterError
from gankit.layers.spectral_norm import sn_conv2d

__all__ = [
    "ATTENTION_NAMES",
    "NONLOCAL_MODES",
    "NonLocal",
    "SelfAttention",
    "attention",
    "attention_reference",
    "build_attention",
    "double_backward_safe",
]

NONLOCAL_MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
ATTENTION_NAMES = ("sagan", "biggan", *NONLOCAL_MODES)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T) v`` with the explicit score matrix (unscaled; the reference path).

    Args:
        q: queries ``(B, N, d_qk)``; k: keys ``(B, M, d_qk)``; v: values ``(B, M, d_v)``.

    Returns:
        ``(B, N, d_v)``; row ``n`` is ``sum_m softmax_m(q_n . k_m) v_m``. Memory ``O(B N M)``.
    """
    scores = torch.bmm(q, k.transpose(1, 2))  # (B, N, M)
    return torch.bmm(scores.softmax(dim=-1), v)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fused: bool = True
) -> torch.Tensor:
    """Same result as :func:`attention_reference`; with ``fused`` it runs one SDPA call.

    q and k, or v, are zero-padded to a common head dim so that SDPA's fused kernel engages (see
    the module docstring); the layout passed to SDPA is ``(B, heads=1, N, d)``.

    Args:
        q: ``(B, N, d_qk)``; k: ``(B, M, d_qk)``; v: ``(B, M, d_v)``.
        fused: ``False`` selects :func:`attention_reference`.

    Returns:
        ``(B, N, d_v)``.
    """
    if not fused:
        return attention_reference(q, k, v)
    d_qk, d_v = q.shape[-1], v.shape[-1]
    if d_qk < d_v:
        q, k = F.pad(q, (0, d_v - d_qk)), F.pad(k, (0, d_v - d_qk))
    elif d_v < d_qk:
        v = F.pad(v, (0, d_qk - d_v))
    out = F.scaled_dot_product_attention(
        q.unsqueeze(1).contiguous(),
        k.unsqueeze(1).contiguous(),
        v.unsqueeze(1).contiguous(),
        scale=1.0,
    )
    return out.squeeze(1)[..., :d_v]


def double_backward_safe(enabled: bool = True) -> contextlib.AbstractContextManager:
    """Inside this context SDPA runs its math backend, which, unlike the fused CPU flash and
    CUDA kernels, has a double backward: for penalties on D's input gradient (R1/R2, WGAN-GP).
    Same values as the fused path; the math path stores the ``N x M`` scores."""
    return sdpa_kernel([SDPBackend.MATH]) if enabled else contextlib.nullcontext()


def _positions(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` -> ``(B, N, C)`` with ``N = prod(spatial)`` (one row per position)."""
    return x.flatten(2).transpose(1, 2)


class SelfAttention(nn.Module):
    """SAGAN self-attention (``pool=False``) or BigGAN's pooled variant (``pool=True``).

    ``x: (B, C, H, W) -> y: (B, C, H, W)``, ``y = gamma * o + x`` with the learnable scalar
    ``gamma`` initialised to 0, so the layer starts as the identity (SAGAN Eq. 3).

    The four 1x1 convolutions are named by role: ``query``, ``key``, ``value``, ``out``.

    - ``pool=False`` (SAGAN Sec. 3): ``s_ij = f(x_i)^T g(x_j)``, ``beta_{j,i} = softmax_i(s_ij)``,
      ``o_j = v(sum_i beta_{j,i} h(x_i))``; f, g, h: C -> C/k and v: C/k -> C. Output position j
      attends over all i, so ``query = g``, ``key = f``, ``value = h``, ``out = v``.
    - ``pool=True`` (BigGAN): ``query = theta`` (C -> C/k), ``key = phi`` (C -> C/k),
      ``value = g`` (C -> C/2), ``out = o`` (C/2 -> C); phi(x) and g(x) are max-pooled 2x2 after
      the conv, so there are ``M = N/4`` keys. With ``k = 8`` the parameter count is BigGAN's,
      ``2 C^2/8 + 2 C^2/2 + 1``.

    All convs are bias-free in both variants: the SAGAN equations are pure linear maps
    (``f(x) = W_f x``, ...), and a bias would be redundant for ``f`` (a constant shift of
    ``s_ij`` over the softmax axis i) and for ``h`` (the softmax weights sum to 1, so it only
    adds a constant after ``v``). With ``sn=True`` all four convs are spectrally normalised.

    Args:
        channels: C, the input and output channels (divisible by k; by 2 too when pooled).
        k: channel reduction for the query/key (and, without pooling, value) maps.
        pool: BigGAN's variant instead of SAGAN's.
        sn: spectral norm on the four convs; ``sn_eps`` its epsilon.
        fused: SDPA path (default) or the explicit softmax reference (``False``).
    """

    def __init__(
        self,
        channels: int,
        k: int = 8,
        pool: bool = False,
        sn: bool = True,
        sn_eps: float = 1e-6,
        fused: bool = True,
    ):
        super().__init__()
        if k < 1 or channels % k or (pool and channels % 2):
            need = f"divisible by k={k}" + (" and by 2 (pool=True)" if pool else "")
            raise ParameterError("channels", f"expected a positive int {need}, got {channels}")
        d_qk = channels // k
        d_v = channels // 2 if pool else d_qk
        self.channels, self.pool, self.fused = channels, pool, fused
        conv = dict(kernel_size=1, bias=False, sn=sn, eps=sn_eps)
        self.query = sn_conv2d(channels, d_qk, **conv)
        self.key = sn_conv2d(channels, d_qk, **conv)
        self.value = sn_conv2d(channels, d_v, **conv)
        self.out = sn_conv2d(d_v, channels, **conv)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, H, W) -> (B, C, H, W)``."""
        b, _, h, w = x.shape
        key, value = self.key(x), self.value(x)
        if self.pool:
            key, value = F.max_pool2d(key, 2), F.max_pool2d(value, 2)
        o = attention(_positions(self.query(x)), _positions(key), _positions(value), self.fused)
        o = o.transpose(1, 2).reshape(b, -1, h, w)  # (B, d_v, H, W)
        # gamma * out(o), with gamma folded into out's 1x1 weight: no full-size product to
        # save for backward, and gamma's gradient is a sum over the weight, not over the batch.
        return F.conv2d(o, self.gamma * self.out.weight) + x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pool={self.pool}, fused={self.fused}"


class NonLocal(nn.Module):
    """Non-local block (Wang et al. 2018, Eq. 1, 6): ``z_i = W_z y_i + x_i`` with
    ``y_i = (1 / C(x)) sum_j f(x_i, x_j) g(x_j)``.

    ``x: (B, C, T)`` for ``dim=1``, ``(B, C, H, W)`` for ``dim=2``, ``(B, C, T, H, W)`` for
    ``dim=3``; ``z`` has the shape of ``x``. ``g``, ``theta``, ``phi`` map C -> ``inter_channels``
    (biased 1x1(x1) convs). Pairwise functions ``f`` and normalisers ``C`` by ``mode`` (Sec. 3.2):

    - ``gaussian``: ``f = exp(x_i^T x_j)``, ``C = sum_j f`` (a softmax over j of raw dot
      products; no theta/phi).
    - ``embedded_gaussian``: ``f = exp(theta(x_i)^T phi(x_j))``, ``C = sum_j f``.
    - ``dot_product``: ``f = theta(x_i)^T phi(x_j)``, ``C = M``, the number of positions j.
      Computed as ``theta_i^T (sum_j phi_j g_j^T) / M``, which never forms the ``N x M`` matrix.
    - ``concatenation``: ``f = ReLU(w_f^T [theta(x_i), phi(x_j)])``, ``C = M``; this one does
      form the ``(B, N, M)`` matrix.

    With ``subsample=True`` the positions j come from ``x_hat``, ``x`` max-pooled by 2 over the
    spatial dims (for ``dim=3`` only H and W, not T): phi and g (and, for ``gaussian``, the raw
    x_j) see ``x_hat``, so ``M = N/2`` (1-D) or ``N/4``; the output keeps the size of ``x``.
    The paper's code pools after phi and g instead; for max pooling the two differ, and pooling
    first makes the convs 4x cheaper.

    ``W_z`` is a 1x1 conv ``inter -> C``, optionally followed by BatchNorm (``bn=True``). It is
    initialised so that the block starts as the identity: with BN the BN scale is zero (as in
    the paper), without BN ``W_z``'s weight and bias are zero.

    Because every map here is a 1x1(x1) conv, it is applied as a ``Conv1d`` on the flattened
    positions ``(B, C, N)``; the result is the same as a 1x1 ``Conv2d``/``Conv3d``.
    BatchNorm over ``(B, C, N)`` likewise equals ``BatchNorm2d``/``3d`` over the unflattened map.

    Args:
        in_channels: C.
        mode: one of :data:`NONLOCAL_MODES`.
        inter_channels: width of theta, phi, g (default ``C // 2``, at least 1).
        dim: number of spatial dims of ``x`` (1, 2 or 3).
        subsample: use the pooled ``x_hat`` for positions j.
        bn: BatchNorm after ``W_z``.
        fused: SDPA for the two softmax modes (default) or the explicit reference.
    """

    def __init__(
        self,
        in_channels: int,
        mode: str,
        inter_channels: int | None = None,
        dim: int = 2,
        subsample: bool = False,
        bn: bool = False,
        fused: bool = True,
    ):
        super().__init__()
        if mode not in NONLOCAL_MODES:
            valid = ", ".join(NONLOCAL_MODES)
            raise ParameterError("mode", f"expected one of {valid}, got {mode!r}")
        if dim not in (1, 2, 3):
            raise ParameterError("dim", f"expected 1, 2 or 3, got {dim}")
        inter = inter_channels or max(in_channels // 2, 1)
        self.in_channels, self.inter_channels, self.mode = in_channels, inter, mode
        self.dim, self.subsample, self.fused = dim, subsample, fused
        self.g = nn.Conv1d(in_channels, inter, 1)
        if mode != "gaussian":
            self.theta = nn.Conv1d(in_channels, inter, 1)
            self.phi = nn.Conv1d(in_channels, inter, 1)
        if mode == "concatenation":
            self.w_f = nn.Linear(2 * inter, 1, bias=False)
        self.w_z = nn.Conv1d(inter, in_channels, 1, bias=not bn)
        self.bn = nn.BatchNorm1d(in_channels) if bn else None
        if self.bn is not None:
            nn.init.zeros_(self.bn.weight)
        else:
            nn.init.zeros_(self.w_z.weight)
            nn.init.zeros_(self.w_z.bias)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``x_hat``: ``x`` max-pooled by 2 over its spatial dims (not T when ``dim=3``)."""
        if self.dim == 1:
            return F.max_pool1d(x, 2)
        if self.dim == 2:
            return F.max_pool2d(x, 2)
        return F.max_pool3d(x, (1, 2, 2))

    def aggregate(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """The non-local operation ``y`` (Eq. 1) for flattened positions.

        Args:
            x: positions i, ``(B, C, N)``; x_hat: positions j, ``(B, C, M)``.

        Returns:
            ``y: (B, inter_channels, N)``.
        """
        g = self.g(x_hat)  # (B, inter, M)
        m = x_hat.shape[-1]
        if self.mode == "gaussian":
            y = attention(x.transpose(1, 2), x_hat.transpose(1, 2), g.transpose(1, 2), self.fused)
            return y.transpose(1, 2)
        theta, phi = self.theta(x), self.phi(x_hat)  # (B, inter, N), (B, inter, M)
        if self.mode == "embedded_gaussian":
            y = attention(theta.transpose(1, 2), phi.transpose(1, 2), g.transpose(1, 2), self.fused)
            return y.transpose(1, 2)
        if self.mode == "dot_product":
            return torch.bmm(torch.bmm(g, phi.transpose(1, 2)), theta) / m
        w_theta, w_phi = self.w_f.weight[0].split(self.inter_channels)
        a = torch.einsum("c,bcn->bn", w_theta, theta)
        b = torch.einsum("c,bcm->bm", w_phi, phi)
        f = torch.relu(a.unsqueeze(2) + b.unsqueeze(1))  # (B, N, M)
        return torch.bmm(g, f.transpose(1, 2)) / m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, *spatial) -> z`` of the same shape (``len(spatial) == dim``)."""
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"NonLocal(dim={self.dim}, in_channels={self.in_channels}) got x of shape "
                f"{tuple(x.shape)}; expected (B, {self.in_channels}) + {self.dim} spatial dims"
            )
        x_hat = self.pool(x) if self.subsample else x
        z = self.w_z(self.aggregate(x.flatten(2), x_hat.flatten(2)))
        if self.bn is not None:
            z = self.bn(z)
        return z.view_as(x) + x

    def extra_repr(self) -> str:
        return f"mode={self.mode}, dim={self.dim}, subsample={self.subsample}, fused={self.fused}"


def build_attention(name: str, channels: int, **kwargs) -> nn.Module:
    """Attention layer by name (see :data:`ATTENTION_NAMES`) for ``channels`` input channels.

    ``sagan`` / ``biggan``: :class:`SelfAttention` with ``pool=False`` / ``True``; the non-local
    modes: :class:`NonLocal` with that ``mode``. ``kwargs`` go to the constructor. An unknown
    name raises :class:`~gankit.errors.ParameterError` (a ``ValueError`` and ``GankitError``).
    """
    if name in ("sagan", "biggan"):
        return SelfAttention(channels, pool=name == "biggan", **kwargs)
    if name in NONLOCAL_MODES:
        return NonLocal(channels, name, **kwargs)
    raise ParameterError("name", f"expected one of {', '.join(ATTENTION_NAMES)}, got {name!r}")
