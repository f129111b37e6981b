"""The web console around the live state: Flask app, login, live stream, wallboard figures, server."""
