"""Evaluation metrics on features: FID, IS, KID, PRDC, intra-class FID (Inception protocol) and
the offline ``class_acc``, ``cfid``, ``swd``, ``cprdc``, ``ccoverage_class`` (gankit-specific,
not comparable to Inception-FID).

Importing this package registers every metric (see :mod:`gankit.metrics.registry`).
"""

from gankit.metrics.classifier import (
    ClassifierExtractor,
    SmallClassifier,
    heldout_split,
    load_or_train_classifier,
)
from gankit.metrics.features import array_batches, extract
from gankit.metrics.fid import fid_from_features, frechet_distance, gaussian_stats
from gankit.metrics.inception import (
    INCEPTION_SHA256,
    FIDInceptionV3,
    InceptionExtractor,
    default_weights_path,
    load_inception,
    tf1_resize_bilinear,
)
from gankit.metrics.inception_score import inception_score
from gankit.metrics.intra_fid import intra_class_fid
from gankit.metrics.kid import kernel_inception_distance
from gankit.metrics.prdc import prdc
from gankit.metrics.registry import (
    Extractor,
    ExtractorSetup,
    Features,
    Metric,
    available_metrics,
    compute,
    get_extractor,
    get_metric,
    register_extractor,
    register_metric,
)
from gankit.metrics.swd import PixelProjector, sliced_wasserstein, wasserstein_1d

__all__ = [
    "INCEPTION_SHA256",
    "ClassifierExtractor",
    "Extractor",
    "ExtractorSetup",
    "FIDInceptionV3",
    "Features",
    "InceptionExtractor",
    "Metric",
    "PixelProjector",
    "SmallClassifier",
    "array_batches",
    "available_metrics",
    "compute",
    "default_weights_path",
    "extract",
    "fid_from_features",
    "frechet_distance",
    "gaussian_stats",
    "get_extractor",
    "get_metric",
    "heldout_split",
    "inception_score",
    "intra_class_fid",
    "kernel_inception_distance",
    "load_inception",
    "load_or_train_classifier",
    "prdc",
    "register_extractor",
    "register_metric",
    "sliced_wasserstein",
    "tf1_resize_bilinear",
    "wasserstein_1d",
]
