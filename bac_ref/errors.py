"""Exceptions shared by every stage of the codec."""


class BitstreamError(ValueError):
    """Malformed, truncated or inconsistent compressed data (SPEC.md, "Invalid data")."""


class ModelFileError(ValueError):
    """A model file that is missing, corrupted, or not the one a bitstream names."""
