"""mod_python3 entry module: agent login (feature code *22).

Dialplan: <action application="python" data="hotline_login"/>
Logic: hotline_fs.agent.login (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import agent
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(agent.login, session, args)
