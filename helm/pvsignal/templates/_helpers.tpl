{{/* The chart name, or nameOverride. */}}
{{- define "pvsignal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release-chart name prefix of every resource (63 characters at most). */}}
{{- define "pvsignal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pvsignal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "pvsignal.labels" -}}
helm.sh/chart: {{ include "pvsignal.chart" . }}
{{ include "pvsignal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pvsignal
{{- end }}

{{/* Selector labels; a component adds app.kubernetes.io/component. */}}
{{- define "pvsignal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pvsignal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pvsignal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pvsignal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pvsignal.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding secret-key, store-url and the optional credentials. */}}
{{- define "pvsignal.secretName" -}}
{{- default (include "pvsignal.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "pvsignal.sqlite" -}}
{{- if eq .Values.store.type "sqlite" }}true{{ end }}
{{- end }}

{{/* The consumer runs when Kafka is on and the store is shared (PostgreSQL). */}}
{{- define "pvsignal.consumer" -}}
{{- if and .Values.kafka.enabled (eq .Values.store.type "postgresql") }}true{{ end }}
{{- end }}

{{/* The Kafka consumers (with pvsignal.consumer): reports, and exposures when enabled; each
a component name, what its topic carries, its values, topic and dead-letter topic. */}}
{{- define "pvsignal.consumers" -}}
- component: consumer
  records: reports
  values: {{ .Values.consumer | toJson }}
  topic: {{ .Values.kafka.topic | quote }}
  dlq: {{ .Values.kafka.dlqTopic | quote }}
{{- if .Values.exposuresConsumer.enabled }}
- component: exposures-consumer
  records: exposures
  values: {{ .Values.exposuresConsumer | toJson }}
  topic: {{ .Values.kafka.exposuresTopic | quote }}
  dlq: {{ .Values.kafka.exposuresDlqTopic | quote }}
{{- end }}
{{- end }}

{{/* Refuse values the schema cannot express. */}}
{{- define "pvsignal.validate" -}}
{{- if include "pvsignal.sqlite" . }}
{{- if or .Values.kafka.enabled .Values.api.autoscaling.enabled (ne (int .Values.api.replicas) 1) }}
{{- fail "store.type sqlite: one API replica only (api.replicas 1), no kafka.enabled, no api.autoscaling (use PostgreSQL to scale)" }}
{{- end }}
{{- end }}
{{- if and .Values.detect.enabled (include "pvsignal.sqlite" .) }}
{{- fail "detect.enabled: detection workers share the store with the API; use store.type postgresql" }}
{{- end }}
{{- if gt (int .Values.consumer.replicas) (int .Values.kafka.partitions) }}
{{- fail (printf "consumer.replicas (%d) exceeds kafka.partitions (%d): a consumer beyond the partition count owns no partition" (int .Values.consumer.replicas) (int .Values.kafka.partitions)) }}
{{- end }}
{{- $sasl := hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- if and $sasl (or (not .Values.kafka.sasl.mechanism) (not .Values.kafka.sasl.username)) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism and kafka.sasl.username" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if and (not $sasl) .Values.kafka.sasl.mechanism }}
{{- fail "kafka.sasl.mechanism is set but kafka.securityProtocol is not SASL_PLAINTEXT or SASL_SSL" }}
{{- end }}
{{- if and .Values.kafka.tls.secret (not (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL"))) }}
{{- fail "kafka.tls.secret is set but kafka.securityProtocol is not SSL or SASL_SSL" }}
{{- end }}
{{- if and .Values.kafka.tls.clientCertificate (not .Values.kafka.tls.secret) }}
{{- fail "kafka.tls.clientCertificate needs kafka.tls.secret (with tls.crt and tls.key)" }}
{{- end }}
{{- if and .Values.oidc.clientId (not .Values.oidc.issuer) }}
{{- fail "oidc.clientId (the dashboard's sign-in) needs oidc.issuer" }}
{{- end }}
{{- if and .Values.secrets.oidcClientSecret (not .Values.oidc.clientId) }}
{{- fail "secrets.oidcClientSecret is set but oidc.clientId is not" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- if and (not (include "pvsignal.sqlite" .)) (not .Values.secrets.storeUrl) }}
{{- fail "secrets.storeUrl (postgresql://...) or secrets.existingSecret is required with store.type postgresql" }}
{{- end }}
{{- if and $sasl (not .Values.secrets.kafkaSaslPassword) }}
{{- fail "secrets.kafkaSaslPassword is required with SASL (or use secrets.existingSecret)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every workload. */}}
{{- define "pvsignal.podCommon" -}}
serviceAccountName: {{ include "pvsignal.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* topologySpreadConstraints of a component: include with (list $ "api"). */}}
{{- define "pvsignal.topologySpread" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- if $root.Values.topologySpread.enabled }}
topologySpreadConstraints:
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "pvsignal.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment of every container: the settings ConfigMap and the secrets. */}}
{{- define "pvsignal.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "pvsignal.fullname" . }}-env
env:
  - name: PVSIGNAL_SECRET_KEY
    valueFrom:
      secretKeyRef:
        name: {{ include "pvsignal.secretName" . }}
        key: secret-key
{{- if not (include "pvsignal.sqlite" .) }}
  - name: PVSIGNAL_STORE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "pvsignal.secretName" . }}
        key: store-url
{{- end }}
{{- if and .Values.kafka.enabled (hasPrefix "SASL_" .Values.kafka.securityProtocol) }}
  - name: PVSIGNAL_KAFKA_SASL_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "pvsignal.secretName" . }}
        key: kafka-sasl-password
{{- end }}
{{- if or .Values.secrets.kafkaSslKeyPassword (and .Values.secrets.existingSecret .Values.kafka.tls.clientCertificate) }}
  - name: PVSIGNAL_KAFKA_SSL_KEY_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "pvsignal.secretName" . }}
        key: kafka-ssl-key-password
        optional: true
{{- end }}
{{- if and .Values.oidc.issuer (not .Values.oidc.jwksUrl) }}
  - name: PVSIGNAL_OIDC_PUBLIC_KEY
    valueFrom:
      secretKeyRef:
        name: {{ include "pvsignal.secretName" . }}
        key: oidc-public-key
{{- end }}
{{- /* The dashboard's client secret: a confidential client's; an existing Secret may lack it
(a public client, PKCE alone), so there it is optional. */}}
{{- if and .Values.oidc.issuer .Values.oidc.clientId (or .Values.secrets.oidcClientSecret .Values.secrets.existingSecret) }}
  - name: PVSIGNAL_OIDC_CLIENT_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "pvsignal.secretName" . }}
        key: oidc-client-secret
        {{- if not .Values.secrets.oidcClientSecret }}
        optional: true
        {{- end }}
{{- end }}
{{- end }}

{{/* Volumes of every pod: /tmp, the config files, the TLS material, the trial store. */}}
{{- define "pvsignal.volumes" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  - name: config
    configMap:
      name: {{ include "pvsignal.fullname" . }}-config
{{- if .Values.store.tls.caSecret }}
  - name: postgres-tls
    secret:
      secretName: {{ .Values.store.tls.caSecret }}
{{- end }}
{{- if and .Values.kafka.enabled .Values.kafka.tls.secret }}
  - name: kafka-tls
    secret:
      secretName: {{ .Values.kafka.tls.secret }}
{{- end }}
{{- if include "pvsignal.sqlite" . }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ include "pvsignal.fullname" . }}-data
{{- end }}
{{- end }}

{{- define "pvsignal.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: config
    mountPath: /etc/pvsignal/config
    readOnly: true
{{- if .Values.store.tls.caSecret }}
  - name: postgres-tls
    mountPath: /etc/pvsignal/postgres
    readOnly: true
{{- end }}
{{- if and .Values.kafka.enabled .Values.kafka.tls.secret }}
  - name: kafka-tls
    mountPath: /etc/pvsignal/kafka
    readOnly: true
{{- end }}
{{- if include "pvsignal.sqlite" . }}
  - name: data
    mountPath: /data
{{- end }}
{{- end }}

{{/* checksum/config: pods restart when their settings, files or secrets change. */}}
{{- define "pvsignal.checksum" -}}
checksum/config: {{ printf "%s%s" (include (print .Template.BasePath "/configmap.yaml") .) (toJson .Values.secrets) | sha256sum }}
{{- end }}

{{/* The Secret's keys (the release's Secret and the migration hook's copy). */}}
{{- define "pvsignal.secretData" -}}
secret-key: {{ include "pvsignal.secretKey" . | quote }}
{{- with .Values.secrets.storeUrl }}
store-url: {{ . | quote }}
{{- end }}
{{- with .Values.secrets.kafkaSaslPassword }}
kafka-sasl-password: {{ . | quote }}
{{- end }}
{{- with .Values.secrets.kafkaSslKeyPassword }}
kafka-ssl-key-password: {{ . | quote }}
{{- end }}
{{- with .Values.secrets.oidcPublicKey }}
oidc-public-key: {{ . | quote }}
{{- end }}
{{- with .Values.secrets.oidcClientSecret }}
oidc-client-secret: {{ . | quote }}
{{- end }}
{{- end }}

{{/* secrets.secretKey, else the one this release's Secret already holds, else a new random one. */}}
{{- define "pvsignal.secretKey" -}}
{{- if .Values.secrets.secretKey }}
{{- .Values.secrets.secretKey }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "pvsignal.fullname" .) }}
{{- if and $existing (index ($existing.data | default dict) "secret-key") }}
{{- index $existing.data "secret-key" | b64dec }}
{{- else }}
{{- randAlphaNum 48 }}
{{- end }}
{{- end }}
{{- end }}
