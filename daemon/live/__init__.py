"""Live state (who is doing what now) and the daemon's HTTP surface."""
