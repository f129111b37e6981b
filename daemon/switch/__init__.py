"""Everything that talks to FreeSWITCH: ESL framing and connections, control, reload, lamps, the dialer."""
