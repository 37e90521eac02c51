"""The pvsignal HTTP API (FastAPI): reports in, signals, alerts and webhooks out.

Nothing is built at import time: ``api.app.create_app(settings)`` builds the application.
"""
