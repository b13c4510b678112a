"""The run engine: one command's projects fanned out over the workers as RQ jobs, one comment.

model.py the Run and its ordering, store.py its state in Redis, report.py its comment and
commit status, engine.py starting, executing, finalizing and dead-job reporting.
"""
