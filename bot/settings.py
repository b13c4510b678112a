"""Server settings: read once (YAML, then `PLANKEEPER_*` environment, then `*_file` secrets),
validated, and passed down as frozen dataclasses.

`load_settings()` is the only place that reads configuration. Every problem raises
`SettingsError` whose message starts with the full key path, e.g.
`github.tokn: unknown key (did you mean token?)`. Secrets never appear in `repr()`.

The dataclasses double as the schema: field types drive conversion, field metadata adds
checks (`check` on the value, `each` on every item, `min`/`max` for integers, `keys` for the
allowed keys of a mapping, `secret` for values that may come from `<key>_file`).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from croniter import croniter

from bot.errors import SettingsError
from runners.environment import could_match_forbidden, is_forbidden

ENV_PREFIX = "PLANKEEPER_"
# Read by the command line itself (which file to load), not a setting.
ENV_NOT_SETTINGS = frozenset({"PLANKEEPER_CONFIG"})
COMMANDS = ("plan", "apply", "unlock", "cancel", "approve_policies", "help", "version", "revert", "import", "state")

Requirement = Literal["approved", "mergeable", "undiverged"]
Override = Literal[
    "apply_requirements", "plan_requirements", "import_requirements", "workflow", "apply_on_approval",
    "apply_on_merge", "automerge", "autoplan", "drift", "delete_source_branch_on_merge", "policy_check",
]
MergeMethod = Literal["merge", "squash", "rebase"]
Silenceable = Literal["plan", "apply"]
NotificationEvent = Literal["apply", "failure", "drift"]

# A user name (an email or DOMAIN\user on Azure DevOps), team:ORG/SLUG (Azure DevOps team names may
# hold spaces), group:PATH, or an Atlassian account id (557058:<uuid>: Bitbucket Cloud's only unique
# user name, see bot.forges.bitbucket).
_PRINCIPAL = re.compile(r"(team:[^/\s][^/]*/[^/]*[^/\s]|group:\S+|[A-Za-z0-9][A-Za-z0-9_.@+\\\-\[\]]*|\d+:[0-9A-Fa-f-]+)")


# --- value checks: return an error message, or None when the value is fine -----------------

def _check_url(value: str) -> str | None:
    if re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return "expected an http:// or https:// URL"


def _check_redis_url(value: str) -> str | None:
    if re.fullmatch(r"(rediss?|unix)://\S+", value):
        return None
    return f"expected redis://HOST:PORT/DB, rediss://... or unix://PATH, got {value!r}"


def _check_cron(value: str) -> str | None:
    if croniter.is_valid(value):
        return None
    return f"{value!r} is not a valid cron expression (minute hour day-of-month month weekday)"


def _check_repo_id(value: str) -> str | None:
    if value.startswith("/"):
        if len(value) < 3 or not value.endswith("/"):
            return f"{value!r}: a regex id must be written /regex/"
        try:
            re.compile(value[1:-1])
        except re.error as exc:
            return f"invalid regex {value!r}: {exc}"
        return None
    if re.fullmatch(r"[^\s/*?]+(/[^\s/*?]+){2,}", value):
        return None
    return f"expected host/owner/repo (e.g. github.com/acme/infra) or /regex/, got {value!r}"


def _check_nonempty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _check_word(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
        return None
    return f"{value!r} must be a single word (letters, digits, _ . -)"


def _check_flag(value: str) -> str | None:
    if re.fullmatch(r"--?[A-Za-z0-9][A-Za-z0-9\-]*", value):
        return None
    return f"{value!r} must be a flag such as -target"


def _check_principal(value: str) -> str | None:
    if _PRINCIPAL.fullmatch(value):
        return None
    return f"{value!r} must be a user name, team:ORG/SLUG or group:PATH"


def _check_relative(value: str) -> str | None:
    if value.startswith(("/", "~")) or ".." in Path(value).parts:
        return f"{value!r} must be a path inside the repository"
    return None


def _check_sandbox_path(value: str) -> str | None:
    path = value[:-3] if value.endswith((":ro", ":rw")) else value
    if path.startswith("/") and "\0" not in path:
        return None
    return f"{value!r} must be an absolute path, optionally followed by :ro (the default) or :rw"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_passthrough(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_*?\[\]!-]+", value):
        return f"{value!r} must be an environment variable name or a glob of one (e.g. TF_TOKEN_*)"
    if could_match_forbidden(value):
        return (f"{value!r} could match the bot's own secrets (PLANKEEPER_*, GITHUB_TOKEN, "
                "GITLAB_TOKEN, GH_TOKEN, REDIS_URL), which never pass: list narrower names")
    return None


def _check_repo_env(value: Any) -> str | None:
    """NAME: value or NAME: {file: /absolute/path}; never a value in the message (secrets)."""
    for name, item in value.items():
        if not _ENV_NAME.fullmatch(name) or is_forbidden(name):
            return f"{name!r} is not an environment variable name a repository may set"
        if isinstance(item, str):
            continue
        path = item.get("file") if isinstance(item, Mapping) and set(item) == {"file"} else None
        if not (isinstance(path, str) and path.startswith("/")):
            return f"{name}: expected a string or {{file: /absolute/path}} (quote numbers)"
    return None


def _check_mapping(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else "expected a mapping"


def _check_unique_names(value: tuple[Any, ...]) -> str | None:
    names = [item.name for item in value]
    dupes = sorted({n for n in names if names.count(n) > 1})
    return f"duplicate name {', '.join(dupes)}" if dupes else None


def _check_not_empty_list(value: tuple[Any, ...]) -> str | None:
    return None if value else "must list at least one entry"


def _secret(default: Any = None, **meta: Any) -> Any:
    return field(default=default, repr=False, metadata={"secret": True, **meta})


def _meta(default: Any = MISSING, factory: Any = MISSING, **meta: Any) -> Any:
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --- the settings tree ----------------------------------------------------------------------

# Each forge is a settings section of that name with `configured`, `web_host`, `bot_login`,
# `webhook_auth_problem()`; bot.forges and bot.events register a client and a webhook reader
# under the same name.
FORGES = ("github", "gitlab", "bitbucket", "gitea", "azuredevops")


@dataclass(frozen=True)
class GitHubSettings:
    api_url: str = _meta("https://api.github.com", check=_check_url)
    token: str | None = _secret()
    app_id: int | None = _meta(None, min=1)
    private_key: str | None = _secret()  # PEM text, usually given as private_key_file
    webhook_secret: str | None = _secret()
    bot_login: str | None = None  # None = ask the API who we are
    write_interval: float = _meta(1.0, min=0)  # seconds between API writes, as GitHub asks of integrations
    # auto: check runs when the bot is a GitHub App, else commit statuses; on: check runs (an App is
    # required); off: commit statuses always. YAML's true/false (and on/off) mean on/off.
    checks: Literal["auto", "on", "off"] = "auto"

    @property
    def configured(self) -> bool:
        """True when a token or a GitHub App is set."""
        return bool(self.token or self.app_id)

    @property
    def is_app(self) -> bool:
        """Whether the bot authenticates as a GitHub App (a token, when given too, wins)."""
        return bool(self.app_id and not self.token)

    @property
    def uses_checks(self) -> bool:
        """Check runs instead of commit statuses (only an App may write check runs)."""
        return self.is_app and self.checks != "off"

    @property
    def web_host(self) -> str:
        """The host in repository ids and web URLs (github.com for api.github.com)."""
        host = urlsplit(self.api_url).hostname or ""
        return "github.com" if host == "api.github.com" else host

    def repo_urls(self, full_name: str) -> tuple[str, str]:
        """(HTTPS clone URL, web URL) of a repository by its owner/name."""
        return f"https://{self.web_host}/{full_name}.git", f"https://{self.web_host}/{full_name}"

    def webhook_auth_problem(self) -> str | None:
        if self.configured and not self.webhook_secret:
            return "github.webhook_secret is required when github.token or github.app_id is set"
        return None


@dataclass(frozen=True)
class GitLabSettings:
    url: str = _meta("https://gitlab.com", check=_check_url)
    token: str | None = _secret()
    webhook_secret: str | None = _secret()
    bot_login: str | None = None

    @property
    def configured(self) -> bool:
        """True when a token is set."""
        return bool(self.token)

    @property
    def web_host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def repo_urls(self, full_name: str) -> tuple[str, str]:
        """(HTTPS clone URL, web URL) of a project by its path (group/sub/name)."""
        web = f"{self.url.rstrip('/')}/{full_name}"
        return f"{web}.git", web

    def webhook_auth_problem(self) -> str | None:
        if self.configured and not self.webhook_secret:
            return "gitlab.webhook_secret is required when gitlab.token is set"
        return None


@dataclass(frozen=True)
class GiteaSettings:
    """Gitea, Forgejo or Codeberg; `url` is the server's root URL (its ROOT_URL, no /api/v1)."""

    url: str | None = _meta(None, check=_check_url)
    token: str | None = _secret()  # a repository admin's (Gitea shows others' permissions only to admins)
    webhook_secret: str | None = _secret()
    bot_login: str | None = None

    @property
    def configured(self) -> bool:
        """True when both the URL and a token are set."""
        return bool(self.url and self.token)

    @property
    def web_host(self) -> str:
        """host, or host:port when the URL names a port that is not its scheme's default (Gitea's
        own default is 3000): as webhooks' `html_url` name the host."""
        if not self.url:
            return ""
        parts = urlsplit(self.url)
        host, port = parts.hostname or "", parts.port
        default = {"http": 80, "https": 443}.get(parts.scheme)
        return f"{host}:{port}" if port and port != default else host

    def repo_urls(self, full_name: str) -> tuple[str, str]:
        """(HTTPS clone URL, web URL) of a repository by its owner/name."""
        web = f"{(self.url or '').rstrip('/')}/{full_name}"
        return f"{web}.git", web

    def webhook_auth_problem(self) -> str | None:
        if self.token and not self.url:
            return ("gitea.url is required when gitea.token is set (the server's root URL, e.g. "
                    "https://gitea.example.com)")
        if self.configured and not self.webhook_secret:
            return "gitea.webhook_secret is required when gitea.url and gitea.token are set"
        return None


@dataclass(frozen=True)
class BitbucketSettings:
    """Bitbucket Cloud (`url` ending in /2.0) or a Bitbucket Data Center server (its base URL)."""

    url: str = _meta("https://api.bitbucket.org/2.0", check=_check_url)
    username: str | None = None  # Cloud: the account's username (app password) or e-mail (API token)
    token: str | None = _secret()  # app password / API token; Data Center: an HTTP access token
    webhook_secret: str | None = _secret()
    bot_login: str | None = None  # Cloud: the bot's account id; Data Center: its user name

    @property
    def is_cloud(self) -> bool:
        """True for Bitbucket Cloud's REST API (a URL whose path ends in /2.0)."""
        return urlsplit(self.url).path.rstrip("/").endswith("/2.0")

    @property
    def configured(self) -> bool:
        """True when a token is set."""
        return bool(self.token)

    @property
    def web_host(self) -> str:
        """The host in repository ids: bitbucket.org for api.bitbucket.org, else the URL's host[:port]."""
        parts = urlsplit(self.url)
        if parts.hostname == "api.bitbucket.org":
            return "bitbucket.org"
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""

    def repo_urls(self, full_name: str) -> tuple[str, str]:
        """(HTTPS clone URL, web URL): Cloud's bitbucket.org/WORKSPACE/SLUG, Data Center's
        BASE/scm/PROJECT/SLUG.git and BASE/projects/PROJECT/repos/SLUG."""
        if self.is_cloud:
            return f"https://bitbucket.org/{full_name}.git", f"https://bitbucket.org/{full_name}"
        base = self.url.rstrip("/")
        project, _, slug = full_name.partition("/")
        return f"{base}/scm/{project.lower()}/{slug}.git", f"{base}/projects/{project}/repos/{slug}"

    def webhook_auth_problem(self) -> str | None:
        if self.configured and not self.webhook_secret:
            return "bitbucket.webhook_secret is required when bitbucket.token is set"
        return None


@dataclass(frozen=True)
class AzureDevOpsSettings:
    """Azure DevOps Services (https://dev.azure.com/ORG) or Server (https://HOST/tfs/COLLECTION).

    Repository ids are `<host>/<organization or collection path>/<project>/<repository>`, e.g.
    dev.azure.com/fabrikam/Platform/infra: the "owner" is the organization and project."""

    org_url: str | None = _meta(None, check=_check_url)
    token: str | None = _secret()  # personal access token
    webhook_username: str | None = None  # service hooks authenticate with basic auth
    webhook_password: str | None = _secret()
    bot_login: str | None = None  # the token's uniqueName (email or DOMAIN\user); None = ask connectionData
    work_item_type: str = _meta("Issue", check=_check_nonempty)  # drift reports: Issue, Bug, Task...

    @property
    def configured(self) -> bool:
        """True when the organization URL and a token are set."""
        return bool(self.org_url and self.token)

    @property
    def web_host(self) -> str:
        """The host (and port, if any) of org_url: the first part of repository ids."""
        return urlsplit(self.org_url or "").netloc.rpartition("@")[2].lower()

    def repo_urls(self, full_name: str) -> tuple[str, str]:
        """(HTTPS clone URL, web URL) of ORG/PROJECT/REPO (COLLECTION-PATH/PROJECT/REPO on Server):
        Azure DevOps serves both at .../PROJECT/_git/REPO."""
        owner, _, name = full_name.rpartition("/")
        scheme = urlsplit(self.org_url or "").scheme or "https"
        url = f"{scheme}://{self.web_host}/{owner}/_git/{name}"
        return url, url

    @property
    def collection_path(self) -> str:
        """The organization (Services) or collection path (Server) in repository ids."""
        return urlsplit(self.org_url or "").path.strip("/")

    def webhook_auth_problem(self) -> str | None:
        if (self.org_url or self.token) and not self.configured:
            return "azuredevops.org_url and azuredevops.token must be set together"
        if self.configured and not (self.webhook_username and self.webhook_password):
            return ("azuredevops.webhook_username and azuredevops.webhook_password are required when "
                    "azuredevops.token is set (the service hooks' basic authentication)")
        return None


@dataclass(frozen=True)
class ProjectDefaults:
    autoplan: bool = True
    apply_requirements: tuple[Requirement, ...] = ("approved", "mergeable")
    plan_requirements: tuple[Requirement, ...] = ()  # checked before /plan and autoplan
    import_requirements: tuple[Requirement, ...] | None = None  # /import, /state rm; None = apply_requirements
    apply_on_approval: bool = False
    apply_on_merge: bool = False
    automerge: bool = False
    automerge_method: MergeMethod = "merge"
    delete_source_branch_on_merge: bool = False  # when the bot merges (automerge)
    silence_pr_comments: tuple[Silenceable, ...] = ()  # no comment for these commands; statuses still set
    # Keys that protect what gets applied come from the server unless it lets a repository's own
    # config (read from the pull request's branch, so written by its author) set them (as Atlantis).
    allowed_overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class Hook:
    run: str = _meta(check=_check_nonempty)
    description: str | None = None


@dataclass(frozen=True)
class RepoKubectl:
    context: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class RepoDrift:
    schedule: str | None = _meta(None, check=_check_cron)
    remediate: bool | None = None


@dataclass(frozen=True)
class RepoEntry:
    """One server-side repo config entry; None means "not set here, inherit"."""

    id: str = _meta(check=_check_repo_id)
    autoplan: bool | None = None
    apply_requirements: tuple[Requirement, ...] | None = None
    plan_requirements: tuple[Requirement, ...] | None = None
    import_requirements: tuple[Requirement, ...] | None = None
    apply_on_approval: bool | None = None
    apply_on_merge: bool | None = None
    automerge: bool | None = None
    automerge_method: MergeMethod | None = None
    delete_source_branch_on_merge: bool | None = None
    policy_check: bool | None = None  # False: the server's policy sets skip this repository
    silence_pr_comments: tuple[Silenceable, ...] | None = None
    allowed_overrides: tuple[Override, ...] | None = None
    workflow: str | None = None  # default workflow name, as in Atlantis' repos.yaml
    allow_custom_workflows: bool | None = None
    allowed_workflows: tuple[str, ...] | None = None
    workflows: dict[str, Any] | None = _meta(None, each=_check_mapping)
    pre_workflow_hooks: tuple[Hook, ...] | None = None
    post_workflow_hooks: tuple[Hook, ...] | None = None
    repo_config_file: str | None = _meta(None, check=_check_relative)
    kubectl: RepoKubectl | None = None
    drift: RepoDrift | None = None
    # NAME -> value | {file: path}: this repository's Terraform runs only; every value a secret
    env: dict[str, Any] | None = field(default=None, repr=False, metadata={"check": _check_repo_env})

    def matches(self, repo_id: str) -> bool:
        """Exact id, or full match of the regex written as /regex/."""
        if self.id.startswith("/") and self.id.endswith("/") and len(self.id) > 1:
            return re.fullmatch(self.id[1:-1], repo_id) is not None
        return self.id == repo_id


@dataclass(frozen=True)
class ResolvedRepoSettings:
    """Defaults overlaid by every matching repo entry, in order."""

    repo_id: str
    autoplan: bool
    apply_requirements: tuple[Requirement, ...]
    plan_requirements: tuple[Requirement, ...]
    import_requirements: tuple[Requirement, ...]
    apply_on_approval: bool
    apply_on_merge: bool
    automerge: bool
    automerge_method: MergeMethod
    delete_source_branch_on_merge: bool
    policy_check: bool
    silence_pr_comments: tuple[Silenceable, ...]
    allowed_overrides: tuple[Override, ...]
    workflow: str | None
    allow_custom_workflows: bool
    allowed_workflows: tuple[str, ...]
    workflows: dict[str, Any]
    pre_workflow_hooks: tuple[Hook, ...]
    post_workflow_hooks: tuple[Hook, ...]
    repo_config_file: str | None  # None = plankeeper.yaml, else atlantis.yaml
    kubectl: RepoKubectl
    drift: RepoDrift
    matched_ids: tuple[str, ...]  # ids of the entries applied, in order
    env: dict[str, Any] = field(default_factory=dict, repr=False)  # see RepoEntry.env


@dataclass(frozen=True)
class TerraformSettings:
    binary: str = _meta("auto", check=_check_nonempty)
    binaries: dict[str, str] = _meta(factory=dict)  # version constraint -> path
    timeout: int = _meta(3600, min=1)
    # install a project's pinned version on first use (runners.terraform_install)
    download: bool = True
    download_url: str = _meta("https://releases.hashicorp.com", check=_check_url)
    tofu_download_url: str = _meta("https://github.com/opentofu/opentofu/releases/download", check=_check_url)
    # names or globs passed from the server's environment, on top of runners.environment's own
    env_passthrough: tuple[str, ...] = _meta((), each=_check_passthrough)
    # modules on the repository's own forge fetched with the bot's credentials during init
    # (runners.git_credentials): never on disk, in argv or in Terraform's environment
    git_credentials: bool = True


@dataclass(frozen=True)
class KubectlSettings:
    binary: str = _meta("kubectl", check=_check_nonempty)  # a name on PATH or a path
    helm: str = _meta("helm", check=_check_nonempty)  # for `render: helm`; a name on PATH or a path
    kubeconfig: Path | None = None  # None = render-only mode
    context: str | None = None


@dataclass(frozen=True)
class DriftSettings:
    schedule: str | None = _meta(None, check=_check_cron)
    remediate: bool = False


@dataclass(frozen=True)
class ReconcileSettings:
    """Sweeps for webhooks the forge never delivered (bot.reconcile)."""

    interval: int = _meta(300, min=0)  # seconds between sweeps; 0 = one sweep at start only


@dataclass(frozen=True)
class WorkTreeSettings:
    """Work trees kept on each machine between jobs (runners.worktrees) and incremental init."""

    reuse: bool = True  # false: every job checks out afresh and runs terraform init
    max_trees: int = _meta(50, min=1)  # least recently used trees go first past any limit
    max_size_mb: int = _meta(20480, min=1)  # all kept trees of a machine together
    max_age_days: int = _meta(14, min=1)  # a tree unused this long is removed


@dataclass(frozen=True)
class StatusSettings:
    """Commit statuses: contexts `{prefix}/plan` and `{prefix}/apply`."""

    prefix: str = _meta("plankeeper", check=_check_word)  # `atlantis` keeps Atlantis' branch protection


@dataclass(frozen=True)
class PolicySet:
    name: str = _meta(check=_check_word)
    path: Path = _meta()
    owners: tuple[str, ...] = _meta((), each=_check_principal)


@dataclass(frozen=True)
class PolicySettings:
    sets: tuple[PolicySet, ...] = _meta((), check=_check_unique_names)


@dataclass(frozen=True)
class UISettings:
    username: str | None = None
    password: str | None = _secret()
    api_token: str | None = _secret()
    read_auth: bool = False  # reading (pages, API, /metrics) needs the credentials too
    port: int | None = _meta(None, min=1, max=65535)  # None = the UI shares `port` with /events


@dataclass(frozen=True)
class Notification:
    kind: Literal["slack", "http"] = _meta()
    url: str = _secret(MISSING, check=_check_url)  # Slack webhook URLs carry a secret
    events: tuple[NotificationEvent, ...] = _meta(
        ("apply", "failure", "drift"), check=_check_not_empty_list)


@dataclass(frozen=True)
class Settings:
    host: str = _meta("127.0.0.1", check=_check_nonempty)
    port: int = _meta(4141, min=1, max=65535)
    public_url: str = _meta("http://localhost:4141", check=_check_url)
    data_dir: Path = Path(".plankeeper")
    redis_url: str | None = _meta(None, check=_check_redis_url)
    workers: int = _meta(2, min=0)
    repo_allowlist: tuple[str, ...] = _meta(("*",), each=_check_nonempty)
    comment_aliases: tuple[str, ...] = _meta((), each=_check_word)
    github: GitHubSettings = field(default_factory=GitHubSettings)
    gitlab: GitLabSettings = field(default_factory=GitLabSettings)
    gitea: GiteaSettings = field(default_factory=GiteaSettings)
    bitbucket: BitbucketSettings = field(default_factory=BitbucketSettings)
    azuredevops: AzureDevOpsSettings = field(default_factory=AzureDevOpsSettings)
    defaults: ProjectDefaults = field(default_factory=ProjectDefaults)
    repos: tuple[RepoEntry, ...] = ()
    terraform: TerraformSettings = field(default_factory=TerraformSettings)
    kubectl: KubectlSettings = field(default_factory=KubectlSettings)
    extra_args_allowlist: tuple[str, ...] = _meta(
        ("-target", "-replace", "-var", "-refresh", "-lock-timeout", "-parallelism", "-destroy", "-var-file"),
        each=_check_flag)
    drift: DriftSettings = field(default_factory=DriftSettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    statuses: StatusSettings = field(default_factory=StatusSettings)
    policies: PolicySettings = field(default_factory=PolicySettings)
    permissions: dict[str, tuple[str, ...]] = _meta(
        factory=dict, keys=COMMANDS, each=lambda v: _first(map(_check_principal, v)))
    allow_fork_prs: bool = False
    allow_draft_prs: bool = False
    checkout_strategy: Literal["branch", "merge"] = "branch"  # merge: plan the head merged into the base
    work_trees: WorkTreeSettings = field(default_factory=WorkTreeSettings)
    ui: UISettings = field(default_factory=UISettings)
    notifications: tuple[Notification, ...] = ()
    sandbox: Literal["auto", "bubblewrap", "none"] = "auto"  # see bot.engines.sandbox_status
    sandbox_paths: tuple[str, ...] = _meta((), each=_check_sandbox_path)  # PATH or PATH:rw, for every job

    def allows_repo(self, repo_id: str) -> bool:
        """Whether a repository id (host/owner/name) matches repo_allowlist (globs, any case)."""
        return any(fnmatch.fnmatchcase(repo_id.lower(), p.lower()) for p in self.repo_allowlist)

    def forges(self) -> dict[str, Any]:
        """Every forge's settings section by name (FORGES order), configured or not."""
        return {name: getattr(self, name) for name in FORGES}

    def forge_for(self, repo_id: str) -> str:
        """The forge ("github", "gitlab", ...) of a repository id (host/owner/name) by its host,
        "" for none."""
        host = repo_id.partition("/")[0]
        return next((name for name, section in self.forges().items() if section.web_host == host), "")

    def repo_settings(self, repo_id: str) -> ResolvedRepoSettings:
        """Settings for one repository (host/owner/repo): later matching entries win."""
        values: dict[str, Any] = dataclasses.asdict(self.defaults)
        values.update(workflow=None, allow_custom_workflows=False, allowed_workflows=(),
                      workflows={}, pre_workflow_hooks=(), post_workflow_hooks=(),
                      repo_config_file=None, policy_check=True)
        kube: dict[str, Any] = {"context": self.kubectl.context, "namespace": None}
        drift: dict[str, Any] = {"schedule": self.drift.schedule,
                                 "remediate": self.drift.remediate}
        matched = []
        env: dict[str, Any] = {}
        for entry in self.repos:
            if not entry.matches(repo_id):
                continue
            matched.append(entry.id)
            env.update(entry.env or {})
            for name in values:
                value = getattr(entry, name)
                if value is not None:
                    values[name] = {**values[name], **value} if name == "workflows" else value
            for target, part in ((kube, entry.kubectl), (drift, entry.drift)):
                if part is not None:
                    target.update({k: v for k, v in vars(part).items() if v is not None})
        if values["import_requirements"] is None:  # Atlantis' default: the same as apply_requirements
            values["import_requirements"] = values["apply_requirements"]
        return ResolvedRepoSettings(
            repo_id=repo_id, **values, kubectl=RepoKubectl(**kube), drift=RepoDrift(**drift),
            matched_ids=tuple(matched), env=env)


def _first(messages: Any) -> str | None:
    return next((m for m in messages if m), None)


def validate_for_serve(settings: Settings) -> None:
    """Checks that only matter for a running server. Raises SettingsError naming the key."""
    gh = settings.github
    for section in settings.forges().values():
        problem = section.webhook_auth_problem()
        if problem:
            raise SettingsError(problem)
    if gh.app_id and not gh.private_key:
        raise SettingsError("github.private_key_file is required when github.app_id is set")
    if gh.private_key and not gh.app_id:
        raise SettingsError("github.app_id is required when github.private_key is set")
    if gh.checks == "on" and gh.configured and not gh.is_app:
        raise SettingsError("github.checks: on needs a GitHub App (github.app_id and github.private_key_file, "
                            "no github.token): GitHub lets only Apps write check runs. Use auto or off with a token.")
    if settings.workers < 0:
        raise SettingsError(f"workers: expected an integer >= 0, got {settings.workers}")
    if bool(settings.ui.username) != bool(settings.ui.password):
        raise SettingsError("ui.username and ui.password must be set together")
    if settings.ui.read_auth and not (settings.ui.username or settings.ui.api_token):
        raise SettingsError("ui.read_auth needs ui.username and ui.password, or ui.api_token: "
                            "otherwise nothing could read the UI")
