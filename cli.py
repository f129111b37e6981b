"""Hotline's console entry point (``hotline = cli:main``); the commands are in ``daemon/cli/``."""
from daemon.cli import hotline, main

__all__ = ["hotline", "main"]

if __name__ == "__main__":
    main()
