"""r1distill: distil a reasoning teacher into smaller students."""

__version__ = "0.1.0"
