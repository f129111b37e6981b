"""Hotline: call-center control for FreeSWITCH."""
__version__ = "0.1.0"
