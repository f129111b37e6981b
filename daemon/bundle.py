"""What ships beside the code: the XML templates, the fs_scripts, the example center.

In a source checkout they are the top-level folders ``dialplan_templates/``, ``fs_scripts/``
and ``config/``; an installed wheel carries copies under ``daemon/_bundled/`` (setup.py's
build step puts them there), so every command finds them without the source tree.
"""
from __future__ import annotations

from pathlib import Path

BUNDLED = ("dialplan_templates", "fs_scripts", "config")
_HERE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The directory of one shipped folder (``dialplan_templates``, ``fs_scripts``, ``config``)."""
    if name not in BUNDLED:
        raise ValueError(f"not a shipped folder: {name}")
    inside = _HERE / "_bundled" / name
    return inside if inside.is_dir() else _HERE.parent / name
