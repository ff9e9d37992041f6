"""gankit: class-conditional image GANs in the Non-local -> SAGAN -> BigGAN line."""

__version__ = "0.1.0"
