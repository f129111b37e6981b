"""mod_python3 entry module: supervisor listen/whisper/barge (feature codes *33/*34/*35<agent>).

Dialplan: <action application="python" data="hotline_supervise listen|whisper|barge [AGENT_ID]"/>
Logic: hotline_fs.supervise.supervise (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import supervise
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(supervise.supervise, session, args)
