"""``gankit measure``: a measured (damaged) copy of a data set, for AmbientGAN experiments.

Every image of the source is measured once, ``y = f_θ(x)`` with its own θ (seeded), and the
measurements are written with the labels to one ``.npz`` (format: :mod:`gankit.data.measured`)
that ``gankit train --data measured.npz --set train.measurement=SPEC`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gankit.config import DEFAULT_PRESET, load_preset
from gankit.data import ImageDataset, MeasuredDataset, load_dataset, to_float, to_uint8
from gankit.data.measured import write_measured
from gankit.errors import GankitError, check_seed
from gankit.measurements import Measurement, build_measurement

MEASURE_BATCH = 500  # images per call of the measurement (fixed: θ depends only on the seed)


def measure_dataset(
    dataset: ImageDataset, measurement: Measurement, seed: int = 0
) -> MeasuredDataset:
    """Measure every image of ``dataset`` once with a fresh θ per image (CPU generator ``seed``).

    Measurements whose values are pixel values (``measurement.keeps_pixels``) are stored as
    uint8 images (exact), the others as float32.
    """
    gen = torch.Generator().manual_seed(check_seed(seed))
    ys, thetas = [], []
    for start in range(0, len(dataset), MEASURE_BATCH):
        x, _ = dataset.batch(range(start, min(start + MEASURE_BATCH, len(dataset))))
        y, theta = measurement.measure(to_float(x), gen)
        ys.append(to_uint8(y) if measurement.keeps_pixels else y.float())
        thetas.append(theta)
    return MeasuredDataset(
        x=torch.cat(ys).numpy(),
        y=np.asarray(dataset.y, dtype=np.int64),
        theta=torch.cat(thetas).numpy(),
        measurement=measurement.spec,
        image_shape=(dataset.channels, dataset.resolution, dataset.resolution),
        class_names=list(dataset.class_names),
        source=f"{dataset.source} ({measurement.spec} measurements)",
        clean_source=dataset.source,
    )


def measure_command(
    data: str,
    measurement: str,
    out: str | Path,
    seed: int = 0,
    preset: str = DEFAULT_PRESET,
    overrides: Sequence[str] = (),
) -> dict:
    """``gankit measure``: measure the images of ``data`` and write them to ``out`` (``.npz``).

    Args:
        data: any source :func:`gankit.data.load_dataset` reads (``""``: the embedded digits),
            loaded at the resolution/channels of ``preset`` with ``overrides``, as training would.
        measurement: spec, e.g. ``"block_pixels:p=0.5"`` (:func:`build_measurement`).
        out: the ``.npz`` file to write.
        seed: seed of the θ draws.

    Returns:
        A JSON-able summary: file, count, spec, stored dtype and shape, seed.
    """
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise GankitError(f"out '{out}': expected a file name ending in .npz")
    build_measurement(measurement, param="measurement")  # a bad spec fails before any loading
    check_seed(seed)
    cfg = load_preset(preset, list(overrides))
    m = cfg.model
    dataset = load_dataset(replace(cfg.data, path=data), m.resolution, m.channels)
    if isinstance(dataset, MeasuredDataset):
        raise GankitError(
            f"data '{data}': already holds measurements ({dataset.measurement}); measure clean "
            "images"
        )
    image_shape = (dataset.channels, dataset.resolution, dataset.resolution)
    f = build_measurement(measurement, image_shape, param="measurement")
    measured = measure_dataset(dataset, f, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_measured(out, measured)
    return {
        "out": str(out),
        "n": len(measured),
        "measurement": measured.measurement,
        "x_dtype": str(measured.x.dtype),
        "x_shape": list(measured.x.shape),
        "image_shape": list(image_shape),
        "seed": seed,
        "source": dataset.source,
    }
