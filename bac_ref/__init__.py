"""bac_ref: the reference implementation of Variational Bayesian Quantization.

Yang, Bamler & Mandt, "Variational Bayesian Quantization", ICML 2020.
SPEC.md (shipped beside this package in the source tree) is the normative
description of every byte and every integer this package produces;
``SPEC_VERSION`` names the version of SPEC.md that this code implements.
"""
from .errors import BitstreamError, ModelFileError

__version__ = "0.1.0"
SPEC_VERSION = "0.1"

__all__ = ["BitstreamError", "ModelFileError", "__version__", "SPEC_VERSION"]
