"""mod_python3 entry module: end the agent's wrap-up early (feature code *27).

Dialplan: <action application="python" data="hotline_wrapup"/>
Logic: hotline_fs.agent.end_wrapup (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import agent
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(agent.end_wrapup, session, args)
