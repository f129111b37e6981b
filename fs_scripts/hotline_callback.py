"""mod_python3 entry module: callback request (queue exit key, or a callback action).

Dialplan: <action application="python" data="hotline_callback QUEUE"/>
Logic: hotline_fs.caller.callback (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import caller
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(caller.callback, session, args)
