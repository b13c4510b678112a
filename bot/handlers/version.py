"""/version: the bot's version and the engine version of each project of the repo config."""
from __future__ import annotations

from bot import __version__, selection
from bot.context import JobContext
from bot.engines import runner_for
from bot.errors import UserFacingError
from bot.handlers.base import Handler, Request, Started
from runners.models import Project


class VersionHandler(Handler):
    name = "version"
    needs_permission = False

    def start(self, ctx: JobContext, request: Request) -> Started:
        pull = request.pull
        repo_dir = ctx.checkout(pull)
        _, effective = selection.load_effective(ctx.workspace, repo_dir, ctx.settings.repo_settings(pull.repo.id))
        lines = [f"**Plankeeper** {__version__}", ""]
        for ep in effective or [None]:
            project = ep.project if ep else Project(".")
            try:
                project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
                engine = runner_for(project, ctx.settings, ctx.workspace, ep, project_dir=project_dir).version()
            except (UserFacingError, RuntimeError, OSError, ValueError) as exc:  # a missing binary is worth reporting
                engine = f"unavailable ({getattr(exc, 'message', exc)})"
            lines.append(f"- {f'`{project.label}`' if ep else 'default'}: {engine}")
        ctx.forge.create_comment(pull, ctx.redact("\n".join(lines)))
        return "replied: version"
