"""Every Redis key Plankeeper writes, in one place (as RQ's keys.py).

Templates are filled with str.format. `{repo}` is a Repo.id (host/owner/name), `{project}`
a Project.key (dir::workspace), `{number}` a pull request number. RQ's own keys (`rq:*`)
are RQ's business.
"""
from __future__ import annotations

PREFIX = "pk:"

# webhooks
DELIVERY = "pk:delivery:{}"  # a delivery id seen (de-duplication)

# the sweep for missed webhooks (bot.reconcile)
RECONCILE_LAST_SWEEP = "pk:reconcile:last-sweep"  # when the last sweep of every repository was queued
RECONCILED = "pk:reconcile:swept:{repo}"  # when the repository's last sweep that completed began

# commands and approvals acted on, forever: a replayed delivery never runs one twice
COMMANDS_SEEN = "pk:commands-seen:{repo}#{number}"  # set of comment ids
APPROVALS_SEEN = "pk:approvals-seen:{repo}#{number}"  # set of review ids

# project locks and mutexes (bot.state.locks, bot.state.leases)
LOCK = "pk:lock:{repo}:{project}"  # JSON Lock: which pull request holds the project
LOCK_PATTERN = "pk:lock:*"
PULL_LOCKS = "pk:pull-locks:{repo}#{number}"  # set of project keys the pull request holds
PULL_MUTEX = "pk:pull-mutex:{repo}#{number}"  # one job of a pull request at a time
PULL_ORDER = "pk:pull-order:{repo}#{number}"  # list: its event jobs' ids in arrival order (bot.state.turns)
TURN_WAITING = "pk:turn-waiting:{job}"  # a job waiting for its turn, renewed while it waits
APPLY_MUTEX = "pk:applying:{repo}:{project}"  # one apply of a project at a time, anywhere
CANCEL = "pk:cancel:{repo}#{number}"  # time of the pull request's last /cancel

# plans and what was applied (bot.state.artifacts, bot.state.deployments)
PLAN = "pk:plan:{repo}#{number}:{project}"  # hash: meta, plan bytes, secrets
PULL_PLANS = "pk:pull-plans:{repo}#{number}"  # set of project keys with a stored plan
PLAN_CONFIG = "pk:plan-config:{repo}#{number}"  # JSON: the repo config a pre-workflow hook generated for the plan
LAST_APPLIED = "pk:last-applied:{repo}:{project}"  # commit whose code is live
DEPLOYMENT = "pk:deployment"  # hash: deployment id -> Deployment JSON
DEPLOYMENTS = "pk:deployments:{repo}"  # stream of deployment ids, oldest first
DEPLOYMENT_REPOS = "pk:deployment-repos"  # set of repo ids with deployments
REPOS = "pk:repos"  # hash: repo id -> Repo JSON, for every repository seen in an event
REVERT = "pk:revert:{repo}#{number}"  # JSON Revert: the revert pull request `number` opened by the bot
REVERTED_BY = "pk:reverted-by:{repo}#{number}"  # the number of the revert pull request of pull request `number`

# policies (bot.policies)
POLICY_RESULTS = "pk:policy-results:{repo}#{number}"  # hash: project key -> {plan_sha256, results}
POLICY_APPROVALS = "pk:policy-approvals:{repo}#{number}:{project}:{sha}"  # set of approved set names

# runs (bot.runs)
RUN = "pk:run:{}"  # hash: meta (the Run), outcome:<index> (each ProjectOutcome)
ACTIVE_RUN = "pk:active-run:{repo}#{number}"  # finalizing job id of the pull request's unfinished run
RUN_COMMENT_MUTEX = "pk:run-lock:{}"  # one editor of a run's comment at a time
RUN_REFRESH = "pk:run-refresh:{}"  # throttles a run's progress edits
PLAN_COMMENTS = "pk:plan-comments:{repo}#{number}"  # JSON list: the current plan comment's id
PENDING_STATUSES = "pk:job-pending:{}"  # hash: status context -> sha a job left pending
JOB_CHECK_RUNS = "pk:job-checks:{}"  # hash: status context -> id of the check run a job left in progress

# jobs, logs, audit (bot.state.joblog, bot.state.audit)
JOB = "pk:job:{}"  # hash: the job record the UI shows
JOBS = "pk:jobs"  # sorted set: job ids by creation time
JOB_LOG = "pk:log:{}"  # list: redacted log lines
JOB_LOG_BYTES = "pk:log-bytes:{}"  # int: bytes in JOB_LOG; -1 once the log was cut (joblog.JobLog)
AUDIT = "pk:audit"  # stream

# drift (bot.drift)
DRIFT_STATUS = "pk:drift:{repo}:{project}"  # JSON status of the last check
DRIFT_STATUS_PATTERN = "pk:drift:*"
DRIFT_SCHEDULES = "pk:drift-schedules:{repo}"  # hash: project key -> {schedule, remediate}
DRIFT_TICK = "pk:drift-tick:{repo}:{scope}:{minute}"  # one scheduler claims each tick

# metrics (bot.metrics): hashes of label sets -> value
METRICS_WEBHOOKS = "pk:metrics:webhooks"
METRICS_JOBS = "pk:metrics:jobs"
METRICS_JOB_DURATION = "pk:metrics:job_duration"
METRICS_DRIFT = "pk:metrics:drift"

# web UI
UI_SECRET = "pk:ui:secret"  # signing key of sessions and CSRF tokens
