"""Typed configuration: dataclasses, TOML presets and ``--set section.key=value`` overrides.

A run is described by one :class:`Config` with four sections (``model``, ``train``, ``data``,
``eval``). Presets in ``gankit/presets/*.toml`` list the fields they set: at least those that
differ from the defaults below, and the settings of their paper even where they equal them.
Unknown keys and ill-typed values raise :class:`ConfigError` with a one-line message naming the
key and listing the valid choices.

Validation is declarative: :data:`_RANGES` (numeric bounds), :data:`CHOICES` (enums) and
:data:`RULES` (cross-field rules) — one line per key or rule. Ranges and choices are checked
when a value is set (``--set``, TOML); :func:`validate` checks all three tables on a whole
config and is called up front by ``train``, ``resume``, ``bench`` and ``info``. Checks that need
more than the config (an arch's supported resolutions, the world size under DDP, the data)
happen where that is known: :func:`gankit.models.build` and the trainer's start-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from gankit.errors import GankitError, ParameterError
from gankit.io_utils import atomic_write

DEFAULT_PRESET = "mnist-sagan"
DEVICES = ("auto", "cpu", "cuda")
"""Device names of ``train.device`` and ``--device`` (:func:`gankit.device.resolve_device`)."""


class ConfigError(GankitError, ValueError):
    """A bad preset name, key or value. The message is one line meant for the user."""


@dataclass
class ModelConfig:
    """Generator/discriminator architecture (see ``gankit.models``)."""

    arch: str = "biggan"  # biggan | sagan | sngan | dcgan (see CHOICES)
    resolution: int = 32  # output side length in pixels
    channels: int = 3  # image channels (1 = grey, 3 = RGB)
    n_classes: int = 10  # 1 = unconditional
    dim_z: int = 128
    G_ch: int = 64  # channel multiplier of G
    D_ch: int = 64  # channel multiplier of D
    G_attn: list[int] = field(default_factory=list)  # resolutions with self-attention in G
    D_attn: list[int] = field(default_factory=list)  # resolutions with self-attention in D
    attn_k: int = 8  # SAGAN attention reduction C -> C/k (sagan and biggan attention)
    # attention block at G_attn/D_attn: "auto" (the arch's own: biggan and dcgan "biggan", sagan
    # and sngan "sagan"), "sagan", "biggan" (pooled keys/values) or "nonlocal:<mode>" (Wang et
    # al. 2018 block, mode gaussian | embedded_gaussian | dot_product | concatenation)
    attn_type: str = "auto"
    shared_dim: int = 0  # BigGAN shared class embedding size (0: one embedding per BN layer)
    hier: bool = False  # hierarchical z: one chunk of z per G block
    G_sn: bool = True  # spectral norm in G
    D_sn: bool = True  # spectral norm in D (always on for BigGAN/SAGAN/SNGAN presets)
    sn_eps: float = 1e-6
    bn_eps: float = 1e-5
    init: str = "ortho"  # ortho | normal | xavier | lecun | default
    aux_classifier: bool = False  # extra class head on D (AC-GAN term, see train.aux_weight)
    # layer switches (gankit.models.style; README "Normalisation, activation and block options"):
    G_norm: str = "batch"  # batch | group | weight | none (class-conditional gain/bias kept)
    D_norm: str = "none"  # batch | group | weight | none (none: D without normalisation)
    num_groups: int = 32  # groups of a group-norm layer (Wu & He's default)
    wn_affine: bool = False  # weight norm: affine in every layer, else strict hidden layers
    activation: str = "relu"  # relu (the arch's own rectifiers) | selu | tprelu
    D_down: str = "avgpool"  # avgpool (the arch's own) | fmp (fractional max-pooling)
    fmp_alpha: float = 1.4142135623730951  # FMP ratio in (1, 2) (Graham: sqrt 2)
    fmp_random: bool = True  # random FMP sequences (else pseudo-random)
    fmp_overlap: bool = True  # overlapping FMP regions (else disjoint)
    G_block: str = "resnet"  # resnet | reversible (RevNet coupling; biggan/sagan/sngan)
    D_block: str = "resnet"  # resnet | reversible (all D blocks after the first)


@dataclass
class TrainConfig:
    """Optimisation and loop settings (see ``gankit.training``)."""

    steps: int = 1000  # G steps
    batch_size: int = 64  # per-process batch
    n_D: int = 2  # D steps per G step
    lr_G: float = 1e-4
    lr_D: float = 4e-4
    betas_G: list[float] = field(default_factory=lambda: [0.0, 0.999])
    betas_D: list[float] = field(default_factory=lambda: [0.0, 0.999])
    adam_eps: float = 1e-8
    optimizer: str = "adam"  # adam | amsgrad (Adam with the running max of the second moment)
    loss: str = "hinge"  # hinge | nonsaturating | wgan-gp | rpgan (relativistic pairing, R3GAN)
    gp_weight: float = 10.0  # for wgan-gp
    ortho_reg: float = 0.0  # BigGAN modified orthogonal regularisation beta (0: off)
    aux_weight: float = 0.0  # weight of the auxiliary-classifier term (needs model.aux_classifier)
    # stabilisers (gankit.augment, gankit.regularizers; README "Stabilisers"):
    diffaug: str = ""  # DiffAugment policy, e.g. "color,translation,cutout" ("" = off)
    lecam_weight: float = 0.0  # LeCam regularisation lambda (0: off)
    lecam_decay: float = 0.99  # EMA decay of LeCam's anchors
    cr_weight: float = 0.0  # consistency regularisation lambda on reals (0: off)
    cr_augment: str = "translation"  # the transform T of consistency regularisation
    r1_gamma: float = 0.0  # zero-centred gradient penalty on reals, gamma/2 E|grad D|^2 (0: off)
    r2_gamma: float = 0.0  # the same on generated images (0: off)
    reg_every: int = 1  # lazy R1/R2: every k-th G step, scaled by k
    init_from: str = ""  # run or checkpoint dir whose G/D/G_ema weights a new run starts from
    accumulate: int = 1  # gradient accumulation steps per optimizer step
    ema: bool = True
    ema_decay: float = 0.999
    ema_start: int = 0  # G step from which EMA averages (before it, EMA copies G)
    standing_stats: int = 0  # batches for BigGAN standing BN statistics at sampling (0: off)
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool | str = "auto"  # auto (on for CUDA) | true | false | a torch.compile mode
    channels_last: bool = True
    # speed levers (gankit.training.speed, README "Performance"):
    sdpa: bool = True  # fused scaled_dot_product_attention in attention layers (else reference)
    fused_optim: bool = True  # Adam fused=True, CUDA and CPU (else the for-loop)
    fused_resample: bool = True  # ResNet blocks: up/down-sampling fused into the 3x3 conv
    checkpoint_activations: bool = False  # ResNet blocks recompute activations in backward
    # compiled step: fraction of the activations the partitioner may keep for backward (it
    # recomputes the rest); 1 = its default choice, 0 = recompute all it can
    activation_memory_budget: float = 1.0
    # CUDA: cuDNN times its conv algorithms on each new shape and keeps the fastest (H100
    # i128 -4 % s/iter, +22 s before the first replay; benchmarks/RESULTS.md)
    cudnn_benchmark: bool = True
    sn_once: bool = True  # G's SN power iteration once per iteration, shared by the D steps' fakes
    # eager: SN of all layers in a few batched buckets per forward; auto = on for CUDA (fewer
    # ops, launch-bound), off on CPU (measured slower there: padded buckets cost FLOPs)
    sn_batched: bool | str = "auto"
    batched_fakes: bool = True  # one G forward makes all D steps' fakes (per-chunk BN stats)
    # the whole iteration as one CUDA graph, replayed (gankit.training.cuda_graph); auto = on
    # for CUDA where the run allows it
    cuda_graph: bool | str = "auto"
    seed: int = 0
    log_every: int = 50
    snapshot_every: int = 500
    keep_last: int = 3
    sigma_layers: int = 4  # how many weights per network to track sigma_0..2 for
    collapse_rollback: bool = False  # roll back to the last healthy checkpoint on collapse
    # AmbientGAN (gankit.measurements, gankit.training.ambient):
    measurement: str = ""  # measurement spec of the data, e.g. "block_pixels:p=0.5" ("" = off)
    ambient_mode: str = "ambient"  # ambient | ignore | unmeasure: how the measured data are used
    # a measurement applied with fresh θ to everything D sees, real and fake (instance noise),
    # e.g. "conv_noise:sigma=1,noise=0.4" ("" = off)
    d_measurement: str = ""
    # G steps over which d_measurement fades out linearly (annealed instance noise): D sees
    # x + a (f_θ(x) - x), a = max(0, 1 - step / d_measurement_fade); 0 = full strength throughout
    d_measurement_fade: int = 0


@dataclass
class DataConfig:
    """Where training images come from (see ``gankit.data``)."""

    path: str = ""  # image folder, .npz, CIFAR batch dir, .npy/.h5 cache; "" = embedded MNIST
    skip_bad: bool = False  # skip unreadable images (counted) instead of failing
    cache: str = ""  # optional .npy/.h5 cache file written on first use
    limit: int = 0  # train on a fixed random subset of this many images (0 = all)


@dataclass
class EvalConfig:
    """Metric settings (see ``gankit.metrics``)."""

    metrics: list[str] = field(default_factory=lambda: ["fid"])
    n: int = 50000
    batch_size: int = 100
    truncation: float = 0.0  # 0 = no truncation
    inception_weights: str = ""
    every: int = 0  # evaluate every N G steps during training (0: off)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str = ""


SECTIONS = ("model", "train", "data", "eval")


def _field_types(section_obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(section_obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(section_obj)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp)


def _expected(tp: Any) -> str:
    """What a value of field type ``tp`` must be, for error messages."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(m) for m in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, _type_name(tp))


def _type_ok(value: Any, tp: Any) -> bool:
    """Whether ``value`` (set in code, not parsed) already has field type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, m) for m in typing.get_args(tp))
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, item_tp) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else False


def _split_list(key: str, text: str, tp: Any) -> list[str]:
    """Items of an override list written ``a,b`` or ``[a,b]`` (``""`` and ``[]``: empty);
    ConfigError for unbalanced brackets or an empty item (``[14``, ``a,,b``)."""
    text = text.strip()
    inner = text[1:-1] if text[:1] == "[" and text[-1:] == "]" else text
    items = [v.strip() for v in inner.split(",")] if inner.strip() else []
    if "[" in inner or "]" in inner or "" in items:
        raise ConfigError(
            f"config key '{key}' expects {_expected(tp)} written a,b or [a,b], got {text!r}"
        )
    return [v.strip("'\"") for v in items]


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (TOML value or override string) to field type ``tp`` or raise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # e.g. bool | str: the first type that fits
        for member in typing.get_args(tp):
            try:
                return _coerce(key, value, member)
            except ConfigError:
                pass
        raise ConfigError(f"config key '{key}' expects {_expected(tp)}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = _split_list(key, value, tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects {_expected(tp)}, got {value!r}")
        return [_coerce(key, v, item_tp) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"config key '{key}' expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value)  # exactly, digits past float's 2**53 too ("1e3" goes on)
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' expects an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' expects a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' expects a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' expects a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{key}' has unsupported type {_type_name(tp)}")


MAX_DIM_Z = 1024  # 8x the presets' largest latent (64..128); 1e9 fails in the allocator
MAX_WIDTH = 512  # channel multipliers: 4x BigGAN-deep's 128 (the presets use 32..96)
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_SHARED_DIM = 1024  # BigGAN's shared class embedding: 128
MAX_STEPS = 10**9
MAX_TRAIN_SEED = 2**32 - 1  # seeds are offset per rank/step; torch generators overflow past 2**64
MIN_TRUNCATION, MAX_TRUNCATION = 0.1, 4.0
"""Truncations a config or a web request may ask for besides 0 (off): below 0.1 almost every
latent entry is resampled (and images barely vary), above 4 the trick does nothing."""


def truncation_allowed(value: float) -> bool:
    """Whether ``value`` is 0 (off) or in ``[MIN_TRUNCATION, MAX_TRUNCATION]`` (NaN is not): the
    rule of ``eval.truncation``, the CLI's ``--truncation`` and the web explorer."""
    return value == 0 or MIN_TRUNCATION <= value <= MAX_TRUNCATION


_MAX_INT = 2**63 - 1  # any integer key: beyond int64, torch fails deep inside
_MAX_FLOAT = 3.4028234663852886e38  # any float key: beyond float32's range, torch fails inside

_BOUNDS: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "positive": (lambda v: v > 0, "> 0", "a positive value"),
    "eps": (lambda v: 0 < v <= 1, "in (0, 1]", "a small constant added for stability"),
    "lr": (lambda v: 0 < v <= 1, "in (0, 1]", "a learning rate"),
    "non_negative": (lambda v: v >= 0, ">= 0", "a non-negative value"),
    "unit": (lambda v: 0 <= v <= 1, "in [0, 1]", "a fraction"),
    "beta": (lambda v: 0 <= v < 1, "in [0, 1)", "an Adam beta"),
    "ratio": (lambda v: 1 < v < 2, "in (1, 2)", "a pooling ratio"),
    "channels": (lambda v: v in (1, 3), "1 or 3", "1 = grey, 3 = RGB"),
    "dim_z": (lambda v: 1 <= v <= MAX_DIM_Z, f"in 1..{MAX_DIM_Z}", "the latent size"),
    "width": (lambda v: 1 <= v <= MAX_WIDTH, f"in 1..{MAX_WIDTH}", "a channel multiplier"),
    "classes": (lambda v: 1 <= v <= MAX_CLASSES, f"in 1..{MAX_CLASSES:,}", "a class count"),
    "shared_dim": (
        lambda v: 0 <= v <= MAX_SHARED_DIM,
        f"in 0..{MAX_SHARED_DIM}",
        "a class embedding size, 0 = off",
    ),
    "steps": (lambda v: 1 <= v <= MAX_STEPS, "in 1..10**9", "a number of G steps"),
    "seed": (lambda v: 0 <= v <= MAX_TRAIN_SEED, "in 0..2**32-1", "a random seed"),
    "truncation": (
        truncation_allowed,
        f"0 (off) or in [{MIN_TRUNCATION}, {MAX_TRUNCATION}]",
        "a truncation threshold",
    ),
}
_POSITIVE = (
    "model.resolution "
    "model.attn_k model.num_groups train.batch_size "
    "train.n_D train.accumulate train.reg_every "
    "train.log_every train.snapshot_every eval.n eval.batch_size"
).split()
_NON_NEGATIVE = (
    "train.gp_weight train.ortho_reg train.aux_weight train.lecam_weight "
    "train.cr_weight train.r1_gamma train.r2_gamma train.ema_start train.standing_stats "
    "train.sigma_layers train.keep_last train.d_measurement_fade data.limit eval.every"
).split()
_RANGES: dict[str, str] = {
    **dict.fromkeys(_POSITIVE, "positive"),
    **dict.fromkeys(_NON_NEGATIVE, "non_negative"),
    **dict.fromkeys(("model.sn_eps", "model.bn_eps", "train.adam_eps"), "eps"),
    **dict.fromkeys(("train.lr_G", "train.lr_D"), "lr"),
    "train.ema_decay": "unit",
    "train.lecam_decay": "unit",
    "train.activation_memory_budget": "unit",
    "train.betas_G": "beta",
    "train.betas_D": "beta",
    "model.fmp_alpha": "ratio",
    "model.channels": "channels",
    "model.dim_z": "dim_z",
    "model.G_ch": "width",
    "model.D_ch": "width",
    "model.n_classes": "classes",
    "model.shared_dim": "shared_dim",
    "train.steps": "steps",
    "train.seed": "seed",
    "eval.truncation": "truncation",
}
"""Numeric keys → bound (a key of ``_BOUNDS``); list values are checked item by item. Every
number of every key must also be finite (no inf/NaN) and every integer fit in int64."""
_LENGTHS: dict[str, tuple[int, str]] = {
    "train.betas_G": (2, "Adam's beta1, beta2"),
    "train.betas_D": (2, "Adam's beta1, beta2"),
}
"""List keys of a fixed length → (length, what the items are)."""

NONLOCAL_MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes accepted by ``train.compile`` (besides auto/true/false)."""
CHOICES: dict[str, tuple[str, ...]] = {
    "model.arch": ("biggan", "dcgan", "sagan", "sngan"),  # = gankit.models.list_archs()
    "model.init": ("ortho", "normal", "xavier", "lecun", "default"),  # = layers.INIT_STYLES
    "model.G_norm": ("batch", "group", "weight", "none"),  # = gankit.models.style.NORMS
    "model.D_norm": ("batch", "group", "weight", "none"),  # = gankit.models.style.NORMS
    "model.activation": ("relu", "selu", "tprelu"),  # = gankit.models.style.ACTIVATIONS
    "model.D_down": ("avgpool", "fmp"),  # = gankit.models.style.DOWNSAMPLERS
    "model.G_block": ("resnet", "reversible"),  # = gankit.models.style.BLOCKS
    "model.D_block": ("resnet", "reversible"),  # = gankit.models.style.BLOCKS
    "train.optimizer": ("adam", "amsgrad"),  # = gankit.training.optim.OPTIMIZERS
    "model.attn_type": ("auto", "sagan", "biggan", *(f"nonlocal:{m}" for m in NONLOCAL_MODES)),
    "train.loss": ("hinge", "nonsaturating", "wgan-gp", "rpgan"),  # = gankit.losses.LOSS_NAMES
    "train.amp": ("auto", "bf16", "fp32"),
    "train.device": DEVICES,
    "train.ambient_mode": ("ambient", "ignore", "unmeasure"),  # = training.ambient.AMBIENT_MODES
}
"""String keys → their valid values (tests check each against the registry it mirrors)."""


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: ``ok(cfg)`` must hold, else ``ConfigError`` naming ``keys``."""

    keys: tuple[str, ...]
    ok: Callable[[Config], bool]
    message: str


RULES: list[Rule] = [
    *(
        Rule(
            (f"train.{key}",),
            lambda c, key=key: getattr(c.train, key) in (True, False, "auto"),
            f"train.{key} must be auto, true or false",
        )
        for key in ("sn_batched", "cuda_graph")  # device-dependent levers
    ),
    Rule(
        ("train.compile",),
        lambda c: c.train.compile in (True, False, "auto", *COMPILE_MODES),
        f"train.compile must be auto, true, false or one of {', '.join(COMPILE_MODES)}",
    ),
    Rule(
        ("train.aux_weight", "model.aux_classifier"),
        lambda c: c.train.aux_weight == 0 or c.model.aux_classifier,
        "train.aux_weight > 0 needs --set model.aux_classifier=true",
    ),
    Rule(
        ("model.hier", "model.shared_dim"),
        lambda c: not c.model.hier or c.model.shared_dim > 0,
        "hierarchical z (model.hier) needs model.shared_dim > 0",
    ),
    *(
        Rule(
            (f"model.{net}_norm", f"model.{net}_sn"),
            lambda c, net=net: (
                getattr(c.model, f"{net}_norm") != "weight" or not getattr(c.model, f"{net}_sn")
            ),
            f"weight norm replaces spectral norm; set model.{net}_sn=false",
        )
        for net in ("G", "D")
    ),
    *(
        Rule(
            ("model.arch", f"model.{net}_block"),
            lambda c, net=net: (
                c.model.arch != "dcgan" or getattr(c.model, f"{net}_block") == "resnet"
            ),
            "arch 'dcgan' has no residual blocks; reversible blocks need arch biggan, sagan "
            "or sngan",
        )
        for net in ("G", "D")
    ),
    Rule(
        ("train.d_measurement_fade", "train.d_measurement"),
        lambda c: c.train.d_measurement_fade == 0 or bool(c.train.d_measurement),
        "a fade needs a measurement to fade, e.g. --set "
        'train.d_measurement="conv_noise:sigma=1,noise=0.4"',
    ),
    Rule(
        ("train.cr_weight", "train.cr_augment"),
        lambda c: c.train.cr_weight == 0 or bool(c.train.cr_augment.strip()),
        "train.cr_weight > 0 needs a transform in train.cr_augment",
    ),
    Rule(
        ("eval.every", "eval.metrics"),
        lambda c: c.eval.every == 0 or bool(c.eval.metrics),
        "evaluating every eval.every steps needs at least one name in eval.metrics",
    ),
    Rule(  # Gulrajani et al. 2017, Sec. 4: no batch norm in the critic
        ("train.loss", "model.D_norm"),
        lambda c: c.train.loss != "wgan-gp" or c.model.D_norm != "batch",
        "wgan-gp penalises per-sample gradients, which batch norm in D couples across the "
        "batch; set model.D_norm=group or none",
    ),
    Rule(  # the memory-saving backward is not differentiable again
        ("train.loss", "model.D_block"),
        lambda c: c.train.loss != "wgan-gp" or c.model.D_block != "reversible",
        "wgan-gp needs a double backward through D; set model.D_block=resnet (reversible D "
        "blocks do not support it)",
    ),
]
"""Cross-field rules of a whole :class:`Config`, checked by :func:`validate`."""

RENAMED: dict[str, str] = {
    "model.attn_pool": 'model.attn_type ("biggan" for attn_pool=true, "sagan" for false)',
}
"""Removed keys → the replacement named in the error. Stored configs that still hold one are
translated by :func:`_legacy_model` when read."""


def _check_value(key: str, value: Any) -> None:
    """ConfigError if ``value`` is not finite, has the wrong length, or is outside the range
    (any item of a list) or choices of ``key``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    numbers_ = [v for v in items if isinstance(v, numbers.Real) and not isinstance(v, bool)]
    floats = [v for v in numbers_ if not isinstance(v, numbers.Integral)]
    if not all(math.isfinite(v) for v in floats):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    if not all(abs(v) <= _MAX_FLOAT for v in floats):
        raise ConfigError(
            f"config key '{key}' must be a number within float32's range (|x| <= 3.4e38), "
            f"got {value!r}"
        )
    if key in _LENGTHS and len(value) != _LENGTHS[key][0]:
        n, what = _LENGTHS[key]
        raise ConfigError(f"config key '{key}' expects {n} numbers ({what}), got {value!r}")
    if key in _RANGES:
        ok, text, what = _BOUNDS[_RANGES[key]]
        if not all(ok(v) for v in items):
            raise ConfigError(f"config key '{key}' must be {text}, got {value!r} ({what})")
    if not all(abs(int(v)) <= _MAX_INT for v in numbers_ if isinstance(v, numbers.Integral)):
        raise ConfigError(f"config key '{key}' must fit in 64 bits, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(
            f"config key '{key}': unknown value {value!r}; valid: {', '.join(CHOICES[key])}"
        )


def _check_rules(cfg: Config, rules: list[Rule]) -> None:
    for rule in rules:
        if not rule.ok(cfg):
            keys = ", ".join(f"'{k}'" for k in rule.keys)
            raise ConfigError(f"config keys {keys}: {rule.message}")


def _check_types(section: str, values: Any) -> None:
    """ConfigError unless ``values`` is the dataclass of ``section`` and each field has its
    annotated type (values set in code skip the parsing of ``--set``/TOML)."""
    if section not in SECTIONS:
        raise ConfigError(
            f"unknown config section '{section}'; valid sections: {', '.join(SECTIONS)}"
        )
    cls = typing.get_type_hints(Config)[section]
    if not isinstance(values, cls):
        raise ConfigError(
            f"config section '{section}' must be a gankit.config.{cls.__name__}, "
            f"got {type(values).__name__}"
        )
    types = _field_types(values)
    unknown = sorted(set(vars(values)) - set(types))
    if unknown:  # an attribute set in code under a misspelt name would be ignored
        raise ConfigError(
            f"unknown config key '{section}.{unknown[0]}'; valid keys in [{section}]: "
            f"{', '.join(sorted(types))}"
        )
    for name, tp in types.items():
        value = getattr(values, name)
        if not _type_ok(value, tp):
            raise ConfigError(
                f"config key '{section}.{name}' expects {_expected(tp)}, got {value!r}"
            )


def _check_values(section: str, values: Any) -> None:
    for f in dataclasses.fields(values):
        _check_value(f"{section}.{f.name}", getattr(values, f.name))


def validate_section(section: str, values: Any) -> None:
    """Check one section dataclass (``section`` = ``"model"``, ...): field types,
    :data:`_RANGES`, :data:`CHOICES` and the :data:`RULES` among its own keys (for code that
    holds only one section, e.g. :func:`gankit.models.build`)."""
    _check_types(section, values)
    _check_values(section, values)
    own = [r for r in RULES if all(k.startswith(f"{section}.") for k in r.keys)]
    _check_rules(Config(**{section: values}), own)


def validate(cfg: Config) -> Config:
    """Check a whole config: field types, ranges, choices and cross-field rules; returns ``cfg``.

    Raises:
        ConfigError: the first violation, one line naming the key(s) and what is valid.
    """
    if not isinstance(cfg, Config):
        raise ConfigError(f"validate expects a gankit.Config, got {type(cfg).__name__}")
    unknown = sorted(set(vars(cfg)) - {*SECTIONS, "preset"})
    if unknown:
        raise ConfigError(
            f"unknown config section '{unknown[0]}'; valid sections: {', '.join(SECTIONS)}"
        )
    for name in SECTIONS:
        _check_types(name, getattr(cfg, name))
    if not isinstance(cfg.preset, str):
        raise ConfigError(f"config key 'preset' expects a string, got {cfg.preset!r}")
    for name in SECTIONS:
        _check_values(name, getattr(cfg, name))
    _check_rules(cfg, RULES)
    return cfg


def _section(cfg: Config, name: str) -> Any:
    if name not in SECTIONS:
        raise ConfigError(f"unknown config section '{name}'; valid sections: {', '.join(SECTIONS)}")
    return getattr(cfg, name)


def set_value(cfg: Config, dotted_key: str, value: Any) -> None:
    """Set ``section.key`` on ``cfg`` after type checking ``value``."""
    if "." not in dotted_key:
        raise ConfigError(
            f"config key '{dotted_key}' must look like section.key "
            f"(sections: {', '.join(SECTIONS)})"
        )
    section_name, key = dotted_key.split(".", 1)
    section = _section(cfg, section_name)
    types = _field_types(section)
    if dotted_key in RENAMED:
        raise ConfigError(f"config key '{dotted_key}' was replaced by {RENAMED[dotted_key]}")
    if key not in types:
        raise ConfigError(
            f"unknown config key '{dotted_key}'; valid keys in [{section_name}]: "
            f"{', '.join(sorted(types))}"
        )
    value = _coerce(dotted_key, value, types[key])
    _check_value(dotted_key, value)
    setattr(section, key, value)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``["section.key=value", ...]`` (the CLI's ``--set``) to ``cfg`` in place."""
    ok = isinstance(overrides, (list, tuple)) and all(isinstance(o, str) for o in overrides)
    if not ok:
        raise ConfigError(
            f"overrides must be a list of 'section.key=value' strings, got {overrides!r}"
        )
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, value = item.split("=", 1)
        set_value(cfg, key.strip(), value.strip())
    return cfg


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Build a :class:`Config` from nested dicts (TOML), checking every key and type."""
    cfg = Config()
    for section_name, values in data.items():
        if section_name == "preset":
            cfg.preset = str(values)
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: '{section_name}' must be a [section] table")
        if section_name == "model":
            values = _legacy_model(values)
        try:
            _section(cfg, section_name)
            for key, value in values.items():
                set_value(cfg, f"{section_name}.{key}", value)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return cfg


def _legacy_model(values: dict[str, Any]) -> dict[str, Any]:
    """A stored ``[model]`` table with the removed ``attn_pool`` key, as ``attn_type``: the
    ``sagan``/``sngan`` archs always used SAGAN attention (``auto``); for the others ``true``
    meant BigGAN's pooled attention."""
    if "attn_pool" not in values:
        return values
    values = dict(values)
    pool = values.pop("attn_pool")
    if "attn_type" not in values:
        own = values.get("arch", ModelConfig.arch) in ("sagan", "sngan")
        values["attn_type"] = "auto" if own else ("biggan" if pool else "sagan")
    return values


def to_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as nested plain values: numbers set in code as NumPy (or other
    ``numbers.Integral``/``Real``) scalars become ``int``/``float``, so the dict serialises to
    TOML and JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(plain(v) for v in value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return value
        return int(value) if isinstance(value, numbers.Integral) else float(value)

    return dataclasses.asdict(cfg, dict_factory=lambda items: {k: plain(v) for k, v in items})


def model_differences(a: Config, b: Config) -> list[str]:
    """The ``model.*`` keys whose values differ between ``a`` and ``b``, sorted (two configs
    of one model when empty)."""
    ma, mb = to_dict(a)["model"], to_dict(b)["model"]
    return sorted(f"model.{k}" for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k))


def _preset_dir() -> Any:
    return resources.files("gankit") / "presets"


def list_presets() -> list[str]:
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def load_preset(name: str = DEFAULT_PRESET, overrides: list[str] | None = None) -> Config:
    """Load preset ``name`` and apply ``overrides`` (a list of ``"section.key=value"``).
    Unknown names list the valid presets."""
    names = list_presets()
    if not isinstance(name, str):  # str(Path("mnist-sagan")) would read as a valid name
        raise ParameterError(
            "name",
            f"expected a preset name ({', '.join(names)}; a config file: "
            f"gankit.config.load_toml), got {type(name).__name__}",
        )
    if name not in names:
        raise ConfigError(f"unknown preset '{name}'; valid presets: {', '.join(names)}")
    text = (_preset_dir() / f"{name}.toml").read_text(encoding="utf-8")
    cfg = from_dict(tomllib.loads(text), source=f"preset {name}")
    cfg.preset = name
    return apply_overrides(cfg, [] if overrides is None else overrides)


def load_toml(path: str | Path) -> Config:
    """Read a config written by :func:`save_toml` (e.g. a run dir's ``config.toml``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); expected UTF-8 TOML"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    if not data:  # e.g. truncated to nothing: defaults would pass for the run's settings
        raise ConfigError(f"{path}: empty; expected a gankit config ([model], [train], ...)")
    return from_dict(data, source=str(path))


def keys_set_in(path: str | Path) -> set[str]:
    """The ``section.key`` names that the TOML config file ``path`` sets itself (those
    :func:`load_toml` does not fill with defaults); read it with :func:`load_toml` first."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return {f"{s}.{k}" for s, keys in data.items() if isinstance(keys, dict) for k in keys}


def save_toml(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` to ``path`` atomically (a kill never leaves a partial file)."""
    text = tomli_w.dumps(to_dict(cfg)).encode()
    atomic_write(path, lambda f: f.write(text))
