"""Who may do what on Azure DevOps, and whether a pull request may be completed.

Write permission is the repository's effective "Contribute" (GenericContribute) for the user, as
the security service computes it (explicit entries, inheritance from the project, and the
user's groups): `accesscontrollists/{Git Repositories namespace}?token=repoV2/PROJECT/REPO
&descriptors=USER&includeExtendedInfo=true`, the same query `az devops security permission show`
makes. The user is found by uniqueName in the identities service. Teams are a project's teams,
read member by member.

Every function here makes SDK calls and runs inside `Sdk.call` (the caller's retry and error).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.forges.azuredevops_sdk import Sdk
from bot.models import Mergeability

GIT_REPOSITORIES_NAMESPACE = "2e9eb7ed-3c0a-47d4-87c1-0ffdd275fd87"
GENERIC_CONTRIBUTE = 4
APPROVING_VOTES = (10, 5)  # approved; approved with suggestions
STATUS_POLICY_TYPE = "cbdc66da-9728-4af8-aada-9a5a32e4a226"  # "Status" branch policy
PASSING_EVALUATIONS = ("approved", "notApplicable")
TEAM_PAGE = 100

# mergeStatus of the test merge -> why Azure DevOps will not complete the pull request
_MERGE_BLOCKERS = {
    "conflicts": "there is a merge conflict between the source and target branches",
    "queued": "Azure DevOps is still computing the merge; try again in a moment",
    "notSet": "Azure DevOps has not computed the merge yet; try again in a moment",
    "rejectedByPolicy": "a branch policy rejected the merge",
    "failure": "Azure DevOps could not compute the merge",
}


@dataclass(frozen=True)
class RepoPath:
    """Where a repository lives in its organization: project and repository names."""

    project: str
    name: str


class Access:
    """Identities, votes, permissions and branch policies, over the SDK's clients."""

    def __init__(self, sdk: Sdk):
        self._sdk = sdk

    def token_login(self) -> str:
        """The uniqueName (account) of the identity the token authenticates as."""
        user = self._sdk.location.get_connection_data().authenticated_user
        return _account(user) or user.provider_display_name or ""

    def approvers(self, where: RepoPath, number: int) -> list[str]:
        reviewers = self._sdk.git.get_pull_request_reviewers(where.name, number, project=where.project)
        return [r.unique_name for r in reviewers
                if r.vote in APPROVING_VOTES and not r.is_container and r.unique_name]

    def mergeability(self, where: RepoPath, number: int, status_prefix: str) -> Mergeability:
        pr = self._sdk.git.get_pull_request(where.name, number, project=where.project)
        if pr.status != "active":
            return Mergeability(False, f"it is {pr.status}, not active")
        if pr.is_draft:
            return Mergeability(False, "it is a draft; publish it first")
        if pr.merge_status != "succeeded":
            return Mergeability(False, _MERGE_BLOCKERS.get(pr.merge_status, f"merge status {pr.merge_status!r}"))
        blocking = self._blocking_policies(pr, status_prefix)
        if blocking:
            return Mergeability(False, "branch policies are not met: " + "; ".join(blocking))
        return Mergeability(True)

    def _blocking_policies(self, pr: Any, status_prefix: str) -> list[str]:
        project_id = pr.repository.project.id
        artifact = f"vstfs:///CodeReview/CodeReviewId/{project_id}/{pr.pull_request_id}"
        found, skip = [], 0
        while True:
            page = self._sdk.policy.get_policy_evaluations(project_id, artifact, top=TEAM_PAGE, skip=skip)
            found += [_describe(e) for e in page if _blocks(e, status_prefix)]
            if len(page) < TEAM_PAGE:
                return found
            skip += len(page)

    def may_contribute(self, where: RepoPath, login: str) -> bool:
        """Fails closed: an unknown user, or no entry for them, may not."""
        descriptor = self._descriptor(login)
        if descriptor is None:
            return False
        repository = self._sdk.git.get_repository(where.name, project=where.project)
        token = f"repoV2/{repository.project.id}/{repository.id}"
        acls = self._sdk.security.query_access_control_lists(
            GIT_REPOSITORIES_NAMESPACE, token=token, descriptors=descriptor, include_extended_info=True)
        for acl in acls:
            for ace in (acl.aces_dictionary or {}).values():
                if ace.descriptor.lower() == descriptor.lower() and _allows_contribute(ace):
                    return True
        return False

    def in_team(self, project: str, team: str, login: str) -> bool:
        skip = 0
        while True:
            members = self._sdk.core.get_team_members_with_extended_properties(project, team, top=TEAM_PAGE,
                                                                                skip=skip)
            if any(_same_login(m.identity.unique_name, login) for m in members if m.identity):
                return True
            if len(members) < TEAM_PAGE:
                return False
            skip += len(members)

    def _descriptor(self, login: str) -> str | None:
        """The identity descriptor of the user whose account (uniqueName) is login."""
        identities = self._sdk.identity.read_identities(search_filter="General", filter_value=login,
                                                        query_membership="None")
        matching = [i.descriptor for i in identities or [] if not i.is_container and _same_login(_account(i), login)]
        return matching[0] if len(matching) == 1 else None


def _account(identity: Any) -> str:
    """An identity's account name: its `Account` property (Services: the email; Server: DOMAIN\\user)."""
    account = (identity.properties or {}).get("Account")
    value = account.get("$value") if isinstance(account, dict) else account
    return value if isinstance(value, str) else ""


def _same_login(a: str | None, b: str) -> bool:
    return bool(a) and a.lower() == b.lower()  # type: ignore[union-attr]


def _allows_contribute(ace: Any) -> bool:
    info = ace.extended_info
    allow = info.effective_allow if info and info.effective_allow is not None else ace.allow or 0
    deny = info.effective_deny if info and info.effective_deny is not None else ace.deny or 0
    return bool(allow & GENERIC_CONTRIBUTE) and not deny & GENERIC_CONTRIBUTE


def _blocks(evaluation: Any, status_prefix: str) -> bool:
    config = evaluation.configuration
    if evaluation.status in PASSING_EVALUATIONS or not config.is_blocking or config.is_enabled is False:
        return False
    settings = config.settings or {}
    own_apply = (config.type.id == STATUS_POLICY_TYPE and settings.get("statusGenre") == status_prefix
                 and settings.get("statusName") == "apply")
    return not own_apply  # the bot's own apply status is what applying sets


def _describe(evaluation: Any) -> str:
    name = evaluation.configuration.type.display_name or "a policy"
    return f"{name} is {evaluation.status}"
