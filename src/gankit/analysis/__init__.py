"""Analysis of trained networks: singular-value spectra for collapse monitoring."""

from gankit.analysis.spectrum import pick_layers, spectrum_report, top_singular_values

__all__ = ["pick_layers", "spectrum_report", "top_singular_values"]
