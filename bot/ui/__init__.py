"""Web UI and JSON API (read side; writing actions need the UI credentials)."""
from bot.ui.views import blueprint

__all__ = ["blueprint"]
