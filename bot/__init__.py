"""Plankeeper: the outside world (web receiver, forges, commands, locks, jobs, UI)."""

__version__ = "0.1.0"
