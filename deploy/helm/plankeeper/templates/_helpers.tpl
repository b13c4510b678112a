{{/* Names and labels ------------------------------------------------------------------------- */}}

{{- define "plankeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Leaves room for the "-worker" / "-redis" suffixes within the 63 characters of a name. */}}
{{- define "plankeeper.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "plankeeper.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "plankeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* dict "root" $ "component" "web" */}}
{{- define "plankeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plankeeper.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "plankeeper.componentLabels" -}}
{{ include "plankeeper.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "plankeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "plankeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "plankeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Paths inside the pods ------------------------------------------------------------------- */}}

{{- define "plankeeper.configDir" -}}/etc/plankeeper{{- end }}
{{- define "plankeeper.configFile" -}}/etc/plankeeper/config.yaml{{- end }}
{{/* The volume's root belongs to root; data_dir must be the process' own (bot.datadir). */}}
{{- define "plankeeper.dataDir" -}}/data/plankeeper{{- end }}
{{- define "plankeeper.secretsDir" -}}/run/secrets/plankeeper{{- end }}
{{- define "plankeeper.uid" -}}10001{{- end }}

{{/* Secrets: group -> [setting, key-name value, file name]; the file is <secretsDir>/<group>/<file> */}}
{{- define "plankeeper.secretFiles" -}}
github:
  - {setting: token, keyValue: tokenKey, file: token}
  - {setting: webhook_secret, keyValue: webhookSecretKey, file: webhook-secret}
  - {setting: private_key, keyValue: privateKeyKey, file: private-key.pem}
gitlab:
  - {setting: token, keyValue: tokenKey, file: token}
  - {setting: webhook_secret, keyValue: webhookSecretKey, file: webhook-secret}
bitbucket:
  - {setting: token, keyValue: tokenKey, file: token}
  - {setting: webhook_secret, keyValue: webhookSecretKey, file: webhook-secret}
gitea:
  - {setting: token, keyValue: tokenKey, file: token}
  - {setting: webhook_secret, keyValue: webhookSecretKey, file: webhook-secret}
azuredevops:
  - {setting: token, keyValue: tokenKey, file: token}
  - {setting: webhook_password, keyValue: webhookPasswordKey, file: webhook-password}
ui:
  - {setting: password, keyValue: passwordKey, file: password}
  - {setting: api_token, keyValue: apiTokenKey, file: api-token}
{{- end }}

{{/* Redis ----------------------------------------------------------------------------------- */}}

{{- define "plankeeper.redisHost" -}}
{{- printf "%s-redis" (include "plankeeper.fullname" .) }}
{{- end }}

{{- define "plankeeper.redisSecretName" -}}
{{- default (printf "%s-redis" (include "plankeeper.fullname" .)) .Values.redis.auth.existingSecret }}
{{- end }}

{{/* PLANKEEPER_REDIS_URL, the same for the web and the worker pods. */}}
{{- define "plankeeper.redisEnv" -}}
{{- if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "plankeeper.redisSecretName" . }}
      key: {{ .Values.redis.auth.passwordKey }}
- name: PLANKEEPER_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "plankeeper.redisHost" .) | quote }}
{{- else if .Values.externalRedis.existingSecret }}
- name: PLANKEEPER_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretKey }}
{{- else }}
- name: PLANKEEPER_REDIS_URL
  value: {{ .Values.externalRedis.url | quote }}
{{- end }}
{{- end }}

{{/* Checks: a clear refusal at `helm install` rather than a pod that cannot start ---------- */}}

{{- define "plankeeper.validate" -}}
{{- $cfg := .Values.config | default dict }}
{{- $managed := dict "host" "0.0.0.0, for the Service" "port" "web.containerPort" "data_dir" "an emptyDir sized by web.dataSizeLimit and worker.dataSizeLimit" "workers" "worker.replicas (pods of `plankeeper worker`)" "redis_url" "redis or externalRedis" "sandbox" "sandbox.mode" }}
{{- range $key, $from := $managed }}
{{- if hasKey $cfg $key }}
{{- fail (printf "config.%s is set by the chart, from %s: remove it from config" $key $from) }}
{{- end }}
{{- end }}
{{- range $group, $files := (include "plankeeper.secretFiles" . | fromYaml) }}
{{- $section := get $cfg $group | default dict }}
{{- range $files }}
{{- if get $section .setting }}
{{- fail (printf "config.%s.%s: a secret value would be stored in a ConfigMap; put it in a Secret and name it in secrets.%s.existingSecret (its key in secrets.%s.%s)" $group .setting $group $group .keyValue) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $i, $n := (get $cfg "notifications" | default list) }}
{{- if and (kindIs "map" $n) (get $n "url") }}
{{- fail (printf "config.notifications[%d].url: a webhook URL is a secret; mount it from a Secret (extraVolumes) and give url_file instead" $i) }}
{{- end }}
{{- end }}
{{- if and (ne .Values.sandbox.mode "bubblewrap") (not .Values.sandbox.acceptUnsandboxedJobs) }}
{{- fail (printf "sandbox.mode: %s can run code from pull requests without a sandbox, able to read the forge tokens and the Redis URL of its pod. Make bubblewrap work (the chart's README.md, \"The sandbox\"), or set sandbox.acceptUnsandboxedJobs=true to accept that" .Values.sandbox.mode) }}
{{- end }}
{{- if and (ne .Values.sandbox.mode "none") (eq .Values.sandbox.procMount "Unmasked") (not .Values.sandbox.userNamespace) }}
{{- fail "sandbox.procMount: Unmasked needs sandbox.userNamespace: true (Kubernetes allows an unmasked /proc only in a pod with its own user namespace)" }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- if or .Values.externalRedis.url .Values.externalRedis.existingSecret }}
{{- fail "externalRedis is set while redis.enabled is true: set redis.enabled=false to use your own Redis, or clear externalRedis" }}
{{- end }}
{{- else }}
{{- if and .Values.externalRedis.url .Values.externalRedis.existingSecret }}
{{- fail "externalRedis: set url or existingSecret, not both" }}
{{- end }}
{{- if not (or .Values.externalRedis.url .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled is false but externalRedis has neither url nor existingSecret: every pod needs the same Redis" }}
{{- end }}
{{- if and .Values.externalRedis.url (not (regexMatch "^(rediss?|unix)://\\S+$" .Values.externalRedis.url)) }}
{{- fail (printf "externalRedis.url: expected redis://HOST:PORT/DB or rediss://..., got %q" .Values.externalRedis.url) }}
{{- end }}
{{- if and .Values.externalRedis.url (regexMatch "^rediss?://[^/@]*:[^/@]*@" .Values.externalRedis.url) }}
{{- fail "externalRedis.url holds a password: put the whole URL in a Secret and name it in externalRedis.existingSecret" }}
{{- end }}
{{- end }}
{{- $gh := .Values.secrets.github }}
{{- $ghConfig := get $cfg "github" | default dict }}
{{- if and (has (toString (get $ghConfig "checks")) (list "on" "true")) (or (and $gh.existingSecret $gh.tokenKey) (get $ghConfig "token_file")) }}
{{- fail "config.github.checks: on needs a GitHub App (GitHub lets only Apps write check runs), and a token wins over an App: set secrets.github.tokenKey to \"\", secrets.github.privateKeyKey and config.github.app_id, or use checks auto or off with a token" }}
{{- end }}
{{- $gitea := .Values.secrets.gitea }}
{{- if and $gitea.existingSecret $gitea.tokenKey (not (get (get $cfg "gitea" | default dict) "url")) }}
{{- fail "config.gitea.url is required with secrets.gitea (Gitea has no default server): the server's root URL, e.g. https://gitea.example.com or https://codeberg.org" }}
{{- end }}
{{- $ado := .Values.secrets.azuredevops }}
{{- $adoConfig := get $cfg "azuredevops" | default dict }}
{{- if and $ado.existingSecret $ado.tokenKey }}
{{- if not (get $adoConfig "org_url") }}
{{- fail "config.azuredevops.org_url is required with secrets.azuredevops: https://dev.azure.com/ORG, or https://HOST/tfs/COLLECTION for Azure DevOps Server" }}
{{- end }}
{{- if and $ado.webhookPasswordKey (not (get $adoConfig "webhook_username")) }}
{{- fail "config.azuredevops.webhook_username is required with secrets.azuredevops.webhookPasswordKey: the service hooks' basic auth user name (the password comes from the Secret)" }}
{{- end }}
{{- end }}
{{- $ui := .Values.secrets.ui }}
{{- if and $ui.existingSecret (ne (empty $ui.usernameKey) (empty $ui.passwordKey)) }}
{{- fail "secrets.ui: usernameKey and passwordKey go together (basic auth); set both or clear both" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (dig "ui" "read_auth" false $cfg) (not (and $ui.existingSecret $ui.apiTokenKey)) }}
{{- fail "metrics.serviceMonitor with config.ui.read_auth: Prometheus needs the API token: set secrets.ui.existingSecret and secrets.ui.apiTokenKey" }}
{{- end }}
{{- end }}

{{/* config.yaml: the values' config, plus the *_file keys of the mounted Secrets ------------ */}}

{{- define "plankeeper.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $root := . }}
{{- range $group, $files := (include "plankeeper.secretFiles" . | fromYaml) }}
{{- $source := get $root.Values.secrets $group }}
{{- if $source.existingSecret }}
{{- $section := get $cfg $group | default dict }}
{{- range $files }}
{{- if get $source .keyValue }}
{{- $fileKey := printf "%s_file" .setting }}
{{- if get $section $fileKey }}
{{- fail (printf "config.%s.%s and secrets.%s.%s both give %s.%s: use one" $group $fileKey $group .keyValue $group .setting) }}
{{- end }}
{{- $_ := set $section $fileKey (printf "%s/%s/%s" (include "plankeeper.secretsDir" $root) $group .file) }}
{{- end }}
{{- end }}
{{- $_ := set $cfg $group $section }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "sandbox" .Values.sandbox.mode }}
{{- if and (not (get $cfg "public_url")) .Values.ingress.enabled .Values.ingress.hosts }}
{{- $scheme := ternary "https" "http" (gt (len .Values.ingress.tls) 0) }}
{{- $_ := set $cfg "public_url" (printf "%s://%s" $scheme (first .Values.ingress.hosts).host) }}
{{- end }}
{{- if not (get $cfg "public_url") }}
{{- $_ := unset $cfg "public_url" }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Pods ------------------------------------------------------------------------------------- */}}

{{- define "plankeeper.sandboxed" -}}
{{- if ne .Values.sandbox.mode "none" }}true{{ end }}
{{- end }}

{{/* A running apply finishes before the worker stops: terraformSteps x terraform.timeout + 120 s. */}}
{{- define "plankeeper.workerGracePeriod" -}}
{{- if .Values.worker.terminationGracePeriodSeconds }}
{{- int .Values.worker.terminationGracePeriodSeconds }}
{{- else }}
{{- $timeout := int (dig "terraform" "timeout" 3600 (.Values.config | default dict) | default 3600) }}
{{- add (mul $timeout (int .Values.worker.terraformSteps)) 120 }}
{{- end }}
{{- end }}

{{- define "plankeeper.env" -}}
- name: PLANKEEPER_HOST
  value: "0.0.0.0"
- name: PLANKEEPER_PORT
  value: {{ .Values.web.containerPort | quote }}
- name: PLANKEEPER_DATA_DIR
  value: {{ include "plankeeper.dataDir" . | quote }}
{{- include "plankeeper.redisEnv" . | trim | nindent 0 }}
{{- $ui := .Values.secrets.ui }}
{{- if and $ui.existingSecret $ui.usernameKey }}
- name: PLANKEEPER_UI__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $ui.existingSecret }}
      key: {{ $ui.usernameKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* dict "root" $ "component" "web"|"worker" */}}
{{- define "plankeeper.volumes" -}}
{{- $root := .root }}
{{- $limit := (get $root.Values .component).dataSizeLimit -}}
- name: config
  configMap:
    name: {{ include "plankeeper.fullname" $root }}
- name: data
  emptyDir: {{ if $limit }}{sizeLimit: {{ $limit }}}{{ else }}{}{{ end }}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- range $group, $files := (include "plankeeper.secretFiles" $root | fromYaml) }}
{{- $source := get $root.Values.secrets $group }}
{{- if $source.existingSecret }}
- name: secrets-{{ $group }}
  secret:
    secretName: {{ $source.existingSecret }}
    defaultMode: 0440
    items:
    {{- range $files }}
    {{- if get $source .keyValue }}
      - key: {{ get $source .keyValue }}
        path: {{ .file }}
    {{- end }}
    {{- end }}
{{- end }}
{{- end }}
{{- with $root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "plankeeper.volumeMounts" -}}
- name: config
  mountPath: {{ include "plankeeper.configDir" . }}
  readOnly: true
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/plankeeper
{{- range $group, $source := .Values.secrets }}
{{- if $source.existingSecret }}
- name: secrets-{{ $group }}
  mountPath: {{ printf "%s/%s" (include "plankeeper.secretsDir" $) $group }}
  readOnly: true
{{- end }}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "plankeeper.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- if include "plankeeper.sandboxed" . }}
{{- with .Values.sandbox.procMount }}
procMount: {{ . }}
{{- end }}
{{- with .Values.sandbox.seccompProfile }}
seccompProfile:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.sandbox.appArmorProfile }}
appArmorProfile:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- else }}
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- end }}

{{/* The pod template of the web and the worker Deployments: dict "root" $ "component" "web"|"worker" */}}
{{- define "plankeeper.podTemplate" -}}
{{- $root := .root }}
{{- $values := get $root.Values .component -}}
metadata:
  labels:
    {{- include "plankeeper.selectorLabels" . | nindent 4 }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "plankeeper.config" $root | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "plankeeper.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
  # Kubernetes would add PLANKEEPER_SERVICE_HOST, PLANKEEPER_PORT=tcp://... for the Services of
  # this release, which Plankeeper reads as settings (and refuses).
  enableServiceLinks: false
  {{- if and (include "plankeeper.sandboxed" $root) $root.Values.sandbox.userNamespace }}
  hostUsers: false
  {{- end }}
  {{- if eq .component "worker" }}
  terminationGracePeriodSeconds: {{ include "plankeeper.workerGracePeriod" $root }}
  {{- else }}
  terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
  {{- end }}
  securityContext:
    runAsUser: {{ include "plankeeper.uid" $root }}
    runAsGroup: {{ include "plankeeper.uid" $root }}
    fsGroup: {{ include "plankeeper.uid" $root }}
    runAsNonRoot: true
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "plankeeper.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- if eq .component "web" }}
      # The image's entrypoint is `tini -- plankeeper`: tini passes SIGTERM on.
      args: ["serve", "--config", {{ include "plankeeper.configFile" $root | quote }}, "--workers", "0"]
      {{- else }}
      args: ["worker", "--config", {{ include "plankeeper.configFile" $root | quote }}]
      {{- end }}
      env:
        {{- include "plankeeper.env" $root | nindent 8 }}
        {{- with $values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if eq .component "web" }}
      ports:
        - name: http
          containerPort: {{ $values.containerPort }}
        {{- with dig "ui" "port" nil ($root.Values.config | default dict) }}
        - name: ui
          containerPort: {{ . }}
        {{- end }}
      readinessProbe:
        httpGet: {path: /healthz, port: http}
        {{- toYaml $values.readinessProbe | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        {{- toYaml $values.livenessProbe | nindent 8 }}
      {{- if $values.preStopSleepSeconds }}
      lifecycle:
        preStop:
          exec:
            command: [sleep, {{ $values.preStopSleepSeconds | quote }}]
      {{- end }}
      {{- end }}
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- include "plankeeper.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        {{- include "plankeeper.volumeMounts" $root | nindent 8 }}
  volumes:
    {{- include "plankeeper.volumes" . | nindent 4 }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
