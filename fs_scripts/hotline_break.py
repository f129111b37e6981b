"""mod_python3 entry module: agent break with a reason digit (feature code *25<digit>).

Dialplan: <action application="python" data="hotline_break $1"/>
Logic: hotline_fs.agent.take_break (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import agent
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(agent.take_break, session, args)
