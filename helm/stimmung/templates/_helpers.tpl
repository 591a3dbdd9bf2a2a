{{/* Names and labels ------------------------------------------------------------------------ */}}
{{- define "stimmung.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stimmung.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "stimmung.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "stimmung.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stimmung.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "stimmung.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stimmung
{{- end -}}

{{- define "stimmung.selector" -}}
app.kubernetes.io/name: {{ include "stimmung.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "stimmung.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Secrets by reference: every (name, key) the values name is projected into one read-only
     volume at /etc/stimmung/secrets/<purpose>; the settings point at those files. */}}
{{- define "stimmung.secretRefs" -}}
{{- $refs := dict -}}
{{- with .Values.privacy.pseudonymKeySecret }}{{ if .name }}{{ $_ := set $refs "pseudonym-key" . }}{{ end }}{{ end -}}
{{- with .Values.kafka.security.saslPasswordSecret }}{{ if .name }}{{ $_ := set $refs "kafka-sasl-password" . }}{{ end }}{{ end -}}
{{- with .Values.kafka.security.caSecret }}{{ if .name }}{{ $_ := set $refs "kafka-ca.crt" . }}{{ end }}{{ end -}}
{{- with .Values.kafka.security.clientCertSecret }}{{ if .name }}{{ $_ := set $refs "kafka-client.crt" (dict "name" .name "key" .certKey) }}{{ $_ := set $refs "kafka-client.key" (dict "name" .name "key" .keyKey) }}{{ end }}{{ end -}}
{{- with .Values.elasticsearch.passwordSecret }}{{ if .name }}{{ $_ := set $refs "elasticsearch-password" . }}{{ end }}{{ end -}}
{{- with .Values.elasticsearch.apiKeySecret }}{{ if .name }}{{ $_ := set $refs "elasticsearch-api-key" . }}{{ end }}{{ end -}}
{{- with .Values.elasticsearch.caSecret }}{{ if .name }}{{ $_ := set $refs "elasticsearch-ca.crt" . }}{{ end }}{{ end -}}
{{- with .Values.kibana.passwordSecret }}{{ if .name }}{{ $_ := set $refs "kibana-password" . }}{{ end }}{{ end -}}
{{- with .Values.kibana.apiKeySecret }}{{ if .name }}{{ $_ := set $refs "kibana-api-key" . }}{{ end }}{{ end -}}
{{- if .Values.inbox.enabled }}
{{- with .Values.inbox.sessionSecret }}{{ if .name }}{{ $_ := set $refs "inbox-session-key" . }}{{ end }}{{ end -}}
{{- with .Values.inbox.accountsSecret }}{{ if .name }}{{ $_ := set $refs "inbox-accounts.yaml" . }}{{ end }}{{ end -}}
{{- with .Values.inbox.oidcClientSecret }}{{ if .name }}{{ $_ := set $refs "inbox-oidc-client-secret" . }}{{ end }}{{ end -}}
{{- end }}
{{- range $purpose, $ref := .Values.secretFiles }}{{ if $ref.name }}{{ $_ := set $refs $purpose $ref }}{{ end }}{{ end -}}
{{- toYaml $refs -}}
{{- end -}}

{{- define "stimmung.secretFile" -}}
/etc/stimmung/secrets/{{ . }}
{{- end -}}

{{/* The settings file every role reads (STIMMUNG_CONFIG). Secrets appear only as file paths. */}}
{{- define "stimmung.settings" -}}
{{- $refs := include "stimmung.secretRefs" . | fromYaml -}}
{{- $kafkaSec := dict "protocol" .Values.kafka.security.protocol "sasl_mechanism" .Values.kafka.security.saslMechanism "ssl_check_hostname" .Values.kafka.security.checkHostname -}}
{{- if .Values.kafka.security.saslUsername }}{{ $_ := set $kafkaSec "sasl_username" .Values.kafka.security.saslUsername }}{{ end -}}
{{- if hasKey $refs "kafka-sasl-password" }}{{ $_ := set $kafkaSec "sasl_password_file" (include "stimmung.secretFile" "kafka-sasl-password") }}{{ end -}}
{{- if hasKey $refs "kafka-ca.crt" }}{{ $_ := set $kafkaSec "ssl_cafile" (include "stimmung.secretFile" "kafka-ca.crt") }}{{ end -}}
{{- if hasKey $refs "kafka-client.crt" }}{{ $_ := set $kafkaSec "ssl_certfile" (include "stimmung.secretFile" "kafka-client.crt") }}{{ $_ := set $kafkaSec "ssl_keyfile" (include "stimmung.secretFile" "kafka-client.key") }}{{ end -}}
{{- $t := .Values.kafka.topics -}}
{{- $topics := dict "raw" $t.raw "enriched" $t.enriched "deadletter" $t.deadletter "alerts" $t.alerts "privacy" $t.privacy "consent" ($t.consent | default "stimmung.consent") "influence" ($t.influence | default "stimmung.author-influence") "partitions" (int $t.partitions) "replication_factor" (int $t.replicationFactor) -}}
{{- $kafka := dict "bootstrap_servers" .Values.kafka.bootstrapServers "client_id" .Values.kafka.clientId "topics" $topics "security" $kafkaSec -}}
{{- $es := dict "url" .Values.elasticsearch.url "mentions_index" .Values.elasticsearch.mentionsIndex "retention_days" (int .Values.elasticsearch.retentionDays) "index_period" .Values.elasticsearch.indexPeriod -}}
{{- if .Values.elasticsearch.username }}{{ $_ := set $es "username" .Values.elasticsearch.username }}{{ end -}}
{{- if hasKey $refs "elasticsearch-password" }}{{ $_ := set $es "password_file" (include "stimmung.secretFile" "elasticsearch-password") }}{{ end -}}
{{- if hasKey $refs "elasticsearch-api-key" }}{{ $_ := set $es "api_key_file" (include "stimmung.secretFile" "elasticsearch-api-key") }}{{ end -}}
{{- if hasKey $refs "elasticsearch-ca.crt" }}{{ $_ := set $es "ca_certs" (include "stimmung.secretFile" "elasticsearch-ca.crt") }}{{ end -}}
{{- $kibana := dict -}}
{{- if .Values.kibana.url }}{{ $_ := set $kibana "url" .Values.kibana.url }}{{ end -}}
{{- if .Values.kibana.space }}{{ $_ := set $kibana "space" .Values.kibana.space }}{{ end -}}
{{- if .Values.kibana.username }}{{ $_ := set $kibana "username" .Values.kibana.username }}{{ end -}}
{{- if hasKey $refs "kibana-password" }}{{ $_ := set $kibana "password_file" (include "stimmung.secretFile" "kibana-password") }}{{ end -}}
{{- if hasKey $refs "kibana-api-key" }}{{ $_ := set $kibana "api_key_file" (include "stimmung.secretFile" "kibana-api-key") }}{{ end -}}
{{- if hasKey $refs "elasticsearch-ca.crt" }}{{ $_ := set $kibana "ca_certs" (include "stimmung.secretFile" "elasticsearch-ca.crt") }}{{ end -}}
{{- $privacy := dict -}}
{{- if hasKey $refs "pseudonym-key" }}{{ $_ := set $privacy "pseudonym_key_file" (include "stimmung.secretFile" "pseudonym-key") }}{{ end -}}
{{- $pipeline := dict "app_id" .Values.pipeline.appId -}}
{{- $generated := dict "log_format" "json" "log_level" .Values.logLevel "kafka" $kafka "elasticsearch" $es "kibana" $kibana "privacy" $privacy "pipeline" $pipeline "metrics" (dict "port" (int .Values.metrics.port) "host" "0.0.0.0") -}}
{{- if .Values.inbox.enabled -}}
{{- $inbox := dict "host" "0.0.0.0" "port" (int .Values.inbox.port) "cookie_secure" true -}}
{{- if .Values.inbox.publicUrl }}{{ $_ := set $inbox "public_url" .Values.inbox.publicUrl }}{{ end -}}
{{- if hasKey $refs "inbox-session-key" }}{{ $_ := set $inbox "session_secret_file" (include "stimmung.secretFile" "inbox-session-key") }}{{ end -}}
{{- if hasKey $refs "inbox-accounts.yaml" }}{{ $_ := set $inbox "accounts_file" (include "stimmung.secretFile" "inbox-accounts.yaml") }}{{ end -}}
{{- if hasKey $refs "inbox-oidc-client-secret" }}{{ $_ := set $inbox "oidc" (dict "client_secret_file" (include "stimmung.secretFile" "inbox-oidc-client-secret")) }}{{ end -}}
{{- $_ := set $generated "inbox" $inbox -}}
{{- end -}}
{{- $merged := mustMergeOverwrite (dict) $generated (deepCopy .Values.settings) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* Pod security: non-root, read-only root filesystem, no capabilities. */}}
{{- define "stimmung.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "stimmung.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* One Deployment per role. Args: root, component, args (list), role (values block),
     extraPorts, extraVolumes, extraMounts, strategy, probePort (default: metrics). */}}
{{- define "stimmung.deployment" -}}
{{- $root := .root -}}
{{- $role := .role -}}
{{- $refs := include "stimmung.secretRefs" $root | fromYaml -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "stimmung.fullname" $root }}-{{ .component }}
  labels:
    {{- include "stimmung.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not (and $role.autoscaling $role.autoscaling.enabled) }}
  replicas: {{ $role.replicas | default 1 }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with .strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "stimmung.selector" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "stimmung.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
      annotations:
        # roll the pods when the settings change
        checksum/settings: {{ include "stimmung.settings" $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "stimmung.fullname" $root }}
      automountServiceAccountToken: false
      securityContext:
        {{- include "stimmung.podSecurityContext" $root | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $role.terminationGracePeriodSeconds | default 60 }}
      containers:
        - name: {{ .component }}
          image: {{ include "stimmung.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ toJson .args }}
          env:
            - name: STIMMUNG_CONFIG
              value: /etc/stimmung/settings/settings.yaml
            {{- range $name, $value := $root.Values.extraEnv }}
            - name: {{ $name }}
              value: {{ $value | quote }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $root.Values.metrics.port }}
            {{- with .extraPorts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            # model loading and the first Kafka/Elasticsearch handshakes can take a while
            httpGet: {path: /healthz, port: {{ .probePort | default "metrics" }}}
            periodSeconds: 5
            failureThreshold: {{ $role.startupFailureThreshold | default 36 }}
          livenessProbe:
            # the role's loops have beaten recently (a blocked event loop or a stuck thread fails it)
            httpGet: {path: /healthz, port: {{ .probePort | default "metrics" }}}
            periodSeconds: 15
            timeoutSeconds: 5
            failureThreshold: 4
          readinessProbe:
            # its dependencies answer (Kafka producer, Elasticsearch for the sink, the source for connectors)
            httpGet: {path: /readyz, port: {{ .probePort | default "metrics" }}}
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml $role.resources | nindent 12 }}
          securityContext:
            {{- include "stimmung.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: settings, mountPath: /etc/stimmung/settings, readOnly: true}
            - {name: tmp, mountPath: /tmp}
            {{- if $refs }}
            - {name: secrets, mountPath: /etc/stimmung/secrets, readOnly: true}
            {{- end }}
            {{- with .extraMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: settings
          configMap:
            name: {{ include "stimmung.fullname" $root }}-settings
        - name: tmp
          emptyDir:
            sizeLimit: {{ $role.tmpSize | default "1Gi" }}
        {{- if $refs }}
        - name: secrets
          projected:
            defaultMode: 0440
            sources:
              {{- range $purpose, $ref := $refs }}
              - secret:
                  name: {{ $ref.name }}
                  items:
                    - {key: {{ $ref.key | quote }}, path: {{ $purpose | quote }}}
              {{- end }}
        {{- end }}
        {{- with .extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $role.nodeSelector | default $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $role.tolerations | default $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $role.affinity | default $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "stimmung.selector" (dict "root" $root "component" .component) | nindent 14 }}
{{- end -}}
