"""bac_ref: the reference implementation of Variational Bayesian Quantization.

Yang, Bamler & Mandt, "Variational Bayesian Quantization", ICML 2020.
SPEC.md (shipped beside this package in the source tree) is the normative
description of every byte and every integer this package produces;
``SPEC_VERSION`` names the version of SPEC.md that this code implements.
"""
from .errors import BitstreamError, ModelFileError

# The version rule (SPEC.md, "Versions"): any change to what an encoder writes or a decoder
# accepts changes SPEC_VERSION; the package's version is SPEC_VERSION + "." + a patch
# number for releases that change neither (fixes, speed, documentation, tooling).
SPEC_VERSION = "1.1"
__version__ = "1.1.0"      # a literal, so that setup.cfg's attr: reads it without importing

__all__ = ["BitstreamError", "ModelFileError", "__version__", "SPEC_VERSION", "load_model",
           "compress", "decompress"]


def __getattr__(name):
    # Lazy exports: ``import bac_ref`` stays cheap and never imports torch.
    if name == "load_model":
        from .model import load_model
        return load_model
    if name in ("compress", "decompress"):
        from . import codec
        return getattr(codec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
