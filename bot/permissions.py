"""Who may run which command: write access, plus the configured users/teams/groups."""
from __future__ import annotations

from collections.abc import Iterable

from bot.errors import UserFacingError
from bot.forges.base import Forge
from bot.models import Repo

# Commands that change infrastructure or others' work need write access on top of the list
# (`/cancel` stops someone else's plan or apply; `/plan -- ARGS` changes what Terraform runs;
# `/revert` pushes a branch with the bot's credentials; `/import` and `/state rm` write state).
WRITE_COMMANDS = ("apply", "unlock", "approve_policies", "cancel", "revert", "import", "state")


def check(forge: Forge, repo: Repo, login: str, command: str, permissions: dict[str, tuple[str, ...]],
          needs_write: bool = False) -> None:
    """Raise UserFacingError saying why `login` may not run `command` here."""
    allowed = permissions.get(command)
    if (needs_write or command in WRITE_COMMANDS) and not forge.has_write_permission(repo, login):
        raise UserFacingError(
            f"@{login} cannot `/{command}` here: it needs write permission on {repo.full_name}.",
            title=f"{command} refused",
        )
    if allowed and not is_one_of(forge, repo, login, allowed):
        raise UserFacingError(
            f"@{login} cannot `/{command}` here: the server allows it only for {', '.join(allowed)}.",
            title=f"{command} refused",
        )


def is_one_of(forge: Forge, repo: Repo, login: str, principals: Iterable[str]) -> bool:
    """Whether login is one of the principals: a user name (any case), `team:org/slug` (GitHub)
    or `group:path` (GitLab), memberships asked of the forge."""
    return any(_matches(forge, repo, login, who) for who in principals)


def _matches(forge: Forge, repo: Repo, login: str, who: str) -> bool:
    if who.startswith(("team:", "group:")):
        return forge.in_group(repo, login, who)
    return who.lower() == login.lower()
