"""Web UI and JSON API: reading is open unless ui.read_auth is on, writing actions need the UI
credentials (bot.ui.auth)."""
from __future__ import annotations

from flask import Flask

from bot.ui.api import blueprint as api_blueprint
from bot.ui.views import blueprint

__all__ = ["blueprint", "api_blueprint", "register"]


def register(app: Flask) -> None:
    """Add the pages and the JSON API to the app."""
    app.register_blueprint(blueprint)
    app.register_blueprint(api_blueprint)
