"""The statistics database: schema, migrations, writer, journal, replay, call log, manual inputs."""
