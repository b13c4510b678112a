"""Catching up on webhooks the forge never delivered (SPEC §4 `reconcile`, §9).

GitHub and GitLab do not retry a delivery that failed (the server was down, restarting, or
answered 500), so `plankeeper serve` sweeps every repository it knows at start and every
`reconcile.interval` seconds, and queues ordinary event jobs for what it finds missed:

- an open pull request updated since the last sweep whose head commit has no `{statuses.prefix}/plan`
  status: its autoplan;
- a pull request merged or closed since the last sweep that still holds plans or locks here
  (and, merged, has no `{statuses.prefix}/apply` status on its merge commit): its `merged` (the deploy
  handler decides whether anything applies on merge) or `closed` event, which releases it;
- a command comment newer than the bot's last comment on its pull request, not acted on yet.

Never twice: each such event has a deterministic delivery id (queueing.sweep_delivery_id) that
a webhook bringing the same event claims too (bot.webhooks), and the sweep queues an event only
when it claims that id itself, right before queueing it (queueing.claim_delivery, SET NX); a
comment is acted on once whatever brings it (bot.state.replay). Jobs queued for one pull
request depend on each other in the order the sweep found them: its commands first (in the
order they were written), then the autoplan, so an `/apply` written before a push that was
also missed never applies the newer head (it is refused as stale instead).

Where it runs: a thread in every `serve` process (schedule.Reconciler) decides when, and
queues one sweep job per repository (`bot.jobs.run_reconcile` -> sweep.sweep_repo), so the
forge calls run in a worker and the web process loads no forge client. Several web processes
on one Redis queue one sweep per interval: each sweep records when it was queued
(`pk:reconcile:last-sweep`), and a process queues one only when none was queued since the
start of the current interval (at start: since it came up, so processes started together
share one).
"""
