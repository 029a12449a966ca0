"""chromastyle: colorize and stylize images with one GAN generator, in one pass."""
__version__ = "0.1.0"
