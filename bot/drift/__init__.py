"""Drift: status records (status.py), checks of the default branch (check.py), their forge issue
(issue.py), correction (remediate.py), the cron schedule (schedule.py) and the API (api.py)."""
