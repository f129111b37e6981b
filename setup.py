"""Build step that setup.cfg cannot say: ship the top-level folders inside the package.

``dialplan_templates/``, ``fs_scripts/`` and ``config/`` stay at the top of the source tree
(the project's layout); a built wheel carries copies under ``daemon/_bundled/``, where
``daemon.bundle.bundled()`` finds them once installed. An editable install copies
nothing: there ``bundled()`` reads the source tree's folders directly.
Everything else (metadata, dependencies, package data) is in setup.cfg.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = ("dialplan_templates", "fs_scripts", "config")  # daemon/bundle.py names the same


class build_py_with_bundled(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "daemon" / "_bundled"
        for name in BUNDLED:
            dst = target / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(HERE / name, dst,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_with_bundled})
