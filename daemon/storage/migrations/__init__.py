"""Alembic migrations of the statistics database (run by ``daemon.storage.store.migrate``)."""
