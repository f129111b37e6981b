r"""mod_python3 entry module: on the caller's leg inside the bridge to the agent who
answered a queue call - remember the call for *28, stop the callback key tasks, announce
the agent id to the caller.

Not called from a dialplan extension: the queue extension sets on the caller's leg
bridge_pre_execute_app=python, bridge_pre_execute_data=hotline_announce and
hotline_announce_agent=true|false; FreeSWITCH runs it once the bridge is up.
Logic: hotline_fs.caller.announce (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import caller
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(caller.announce, session, args)
