"""Analysis of trained networks: singular-value spectra for collapse monitoring, saliency maps of
D, GAN inversion (reconstruction error vs a training-set baseline) and nearest training images
of samples (memorisation ratio)."""

from gankit.analysis.neighbours import (
    analyze_neighbours,
    memorisation_ratios,
    nearest,
    nearest_images,
)
from gankit.analysis.reconstruct import Inversion, analyze_reconstruct, invert
from gankit.analysis.saliency import analyze_saliency, saliency_maps
from gankit.analysis.spectrum import pick_layers, spectrum_report, top_singular_values

__all__ = [
    "Inversion",
    "analyze_neighbours",
    "analyze_reconstruct",
    "analyze_saliency",
    "invert",
    "memorisation_ratios",
    "nearest",
    "nearest_images",
    "pick_layers",
    "saliency_maps",
    "spectrum_report",
    "top_singular_values",
]
