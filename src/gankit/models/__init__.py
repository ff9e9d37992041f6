"""Generators and discriminators by name (contract in docs/architecture.md).

``build(model_cfg) -> (G, D)``, ``count_params(module)``, ``sample_z(n, dim_z, truncation)``.
Architectures: ``biggan``, ``sagan``, ``sngan`` (ResNet, :mod:`gankit.models.resnet`) and
``dcgan``; importing this package registers them. ``MeasurementDiscriminator``: the MLP D that
AmbientGAN training uses for measurements that are not images (1-D projections, patches).
"""

from gankit.models import biggan, dcgan, sagan, sngan  # noqa: F401  (register the archs)
from gankit.models.base import ConditionalGenerator, ProjectionDiscriminator
from gankit.models.latent import sample_z
from gankit.models.measurement_d import MeasurementDiscriminator
from gankit.models.registry import (
    ArchSpec,
    attention_type,
    build,
    count_params,
    get_arch,
    list_archs,
    register,
)

__all__ = [
    "ArchSpec",
    "ConditionalGenerator",
    "MeasurementDiscriminator",
    "ProjectionDiscriminator",
    "attention_type",
    "build",
    "count_params",
    "get_arch",
    "list_archs",
    "register",
    "sample_z",
]
