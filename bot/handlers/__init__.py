"""One handler per command, found by name: the comment commands and merge-to-deploy.

A new command is a module here with a Handler subclass, listed in HANDLERS.
"""
from __future__ import annotations

from bot.handlers.apply import ApplyHandler
from bot.handlers.approve_policies import ApprovePoliciesHandler
from bot.handlers.base import Handler, Request, Started, Trigger
from bot.handlers.cancel import CancelHandler
from bot.handlers.deploy import DeployHandler
from bot.handlers.help import HelpHandler
from bot.handlers.import_state import ImportHandler, StateRmHandler
from bot.handlers.plan import PlanHandler
from bot.handlers.revert import RevertHandler
from bot.handlers.unlock import UnlockHandler
from bot.handlers.version import VersionHandler

HANDLERS: dict[str, Handler] = {h.name: h for h in (
    PlanHandler(), ApplyHandler(), DeployHandler(), UnlockHandler(), CancelHandler(), ApprovePoliciesHandler(),
    VersionHandler(), HelpHandler(), RevertHandler(), ImportHandler(), StateRmHandler(),
)}

__all__ = ["HANDLERS", "Handler", "Request", "Started", "Trigger", "handler_for"]


def handler_for(name: str) -> Handler | None:
    return HANDLERS.get(name)
