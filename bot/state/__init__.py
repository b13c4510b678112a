"""What Plankeeper keeps in Redis: key names, leases, locks, plans, deployments, job logs, audit."""
