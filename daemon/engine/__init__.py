"""The segment engine: pure, FreeSWITCH events in, calls, segments and agent intervals out."""
