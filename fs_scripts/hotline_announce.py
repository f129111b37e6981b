r"""mod_python3 entry module: on the agent leg when the agent answers a queue call -
remember the call for *28 and announce the agent id to the caller.

Not called from a dialplan extension: the queue extension sets (and exports to the
agent leg with cc_export_vars) execute_on_answer=python hotline_announce \${cc_agent}
and hotline_announce_agent=true|false.
Logic: hotline_fs.caller.announce (this module only adapts the switch's session).
"""
from __future__ import annotations

from hotline_fs import caller
from hotline_fs.session import run


def handler(session: object, args: str) -> None:
    """Called by mod_python3 with the channel's session and the text after the module name."""
    run(caller.announce, session, args)
