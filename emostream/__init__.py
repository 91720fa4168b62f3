"""emostream: live audience reactions condensed into a low-frequency mood signal."""

__version__ = "0.1.0"
