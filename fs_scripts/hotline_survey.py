"""mod_python3 entry module: satisfaction survey (after an answered queue call, or an action).

Dialplan: <action application="python" data="hotline_survey QUEUE"/>
Logic: hotline_fs.caller.survey (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import caller
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(caller.survey, session, args)
