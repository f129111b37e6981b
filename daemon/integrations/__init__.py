"""Hotline and its users' systems: webhook events and their delivery."""
