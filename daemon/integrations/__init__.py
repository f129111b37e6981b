"""Hotline and its users' systems: the customer directory, webhook events and their delivery."""
