"""The web console around the live state: Flask app, logins, live stream, wallboard."""
