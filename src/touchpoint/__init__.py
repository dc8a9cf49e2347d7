"""Touchpoint: the whole personalization loop in one system."""

__version__ = "0.1.0"
