"""Alembic migrations of the statistics database (run by ``daemon.store.migrate``)."""
