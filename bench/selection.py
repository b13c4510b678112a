"""Benchmark: project selection on a 1,000-project repo config with a 500-file change.

Run: python3 bench/selection.py   (prints the median of 7 runs; target under 200 ms)
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.settings import Settings  # noqa: E402
from runners.projects import select_for_changes  # noqa: E402
from runners.repo_config import parse_repo_config# noqa: E402
from runners.repo_config_merge import merge_with_server

PROJECTS, CHANGED, RUNS = 1000, 500, 7


def config_text() -> str:
    lines = ["version: 3", "projects:"]
    for i in range(PROJECTS):
        lines.append(f"- name: p{i}\n  dir: teams/t{i % 25}/stacks/s{i}")
        if i % 4 == 0:
            lines.append("  autoplan:\n    when_modified: ['**/*.tf', '!**/test/**', '../../modules/**/*.tf']")
        if i % 10 == 1:
            lines.append(f"  depends_on: [p{i - 1}]")
    return "\n".join(lines) + "\n"


def changed_files() -> list[str]:
    files = [f"teams/t{(3 * j) % 25}/stacks/s{3 * j}/main.tf" for j in range(CHANGED - 50)]
    files += [f"docs/page{j}.md" for j in range(50)]
    return files


def main() -> None:
    resolved = Settings().repo_settings("github.com/acme/monorepo")
    started = time.perf_counter()
    config = parse_repo_config(config_text())
    effective = merge_with_server(config, resolved)
    load_ms = (time.perf_counter() - started) * 1000
    changed = changed_files()
    timings, count = [], 0
    with tempfile.TemporaryDirectory() as repo:
        for _ in range(RUNS):
            started = time.perf_counter()
            count = len(select_for_changes(effective, changed, Path(repo), config.autodiscover))
            timings.append((time.perf_counter() - started) * 1000)
    median = statistics.median(timings)
    print(f"projects={PROJECTS} changed_files={len(changed)} selected={count}")
    print(f"parse+merge config: {load_ms:.1f} ms (once per job)")
    print(f"selection median of {RUNS}: {median:.1f} ms (min {min(timings):.1f}, max {max(timings):.1f}); "
          f"target < 200 ms: {'ok' if median < 200 else 'MISSED'}")


if __name__ == "__main__":
    main()
