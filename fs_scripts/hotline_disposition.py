"""mod_python3 entry module: disposition code of the agent's last call (feature code *28<code>).

Dialplan: <action application="python" data="hotline_disposition $1"/>
Logic: hotline_fs.agent.disposition (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import agent
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(agent.disposition, session, args)
