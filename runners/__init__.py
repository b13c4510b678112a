"""Execution of Terraform/OpenTofu and kubectl in isolated work directories.

Nothing in this package knows about Flask, Redis, RQ or forges: it takes paths,
argument lists and callbacks, and returns plain dataclasses (runners.models).
"""
