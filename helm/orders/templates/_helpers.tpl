{{/* Names, labels and the shared pieces of the pod specs. */}}

{{- define "orders.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "orders.fullname" -}}
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

{{- define "orders.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "orders.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: call with (dict "root" $ "component" "api"). */}}
{{- define "orders.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orders.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "orders.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orders.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "orders.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "orders.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "orders.fullname" .)) }}
{{- end }}

{{/* Rolls the pods when the configuration or the chart-made secret changes. */}}
{{- define "orders.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{- define "orders.tlsEnabled" -}}
{{- if or .Values.temporal.tls.enabled .Values.temporal.apiKey.existingSecret }}true{{ end }}
{{- end }}

{{/* Environment shared by the API and the worker. */}}
{{- define "orders.env" -}}
- name: TEMPORAL_ADDRESS
  value: {{ .Values.temporal.address | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
- name: TEMPORAL_TASK_QUEUE
  value: {{ .Values.temporal.taskQueue | quote }}
{{- if include "orders.tlsEnabled" . }}
- name: TEMPORAL_TLS
  value: "true"
{{- with .Values.temporal.tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if .Values.temporal.tls.existingSecret }}
- name: TEMPORAL_TLS_SERVER_CA_CERT_PATH
  value: /etc/orders/temporal-tls/{{ .Values.temporal.tls.caKey }}
{{- if .Values.temporal.tls.mtls }}
- name: TEMPORAL_TLS_CLIENT_CERT_PATH
  value: /etc/orders/temporal-tls/{{ .Values.temporal.tls.certKey }}
- name: TEMPORAL_TLS_CLIENT_KEY_PATH
  value: /etc/orders/temporal-tls/{{ .Values.temporal.tls.keyKey }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.temporal.apiKey.existingSecret }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.temporal.apiKey.key }}
{{- end }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "orders.envFrom" -}}
- configMapRef:
    name: {{ include "orders.fullname" . }}
{{- end }}

{{/* The Secret's keys a process reads, and only those: .root, .keys (required), .optional. */}}
{{- define "orders.secretEnv" -}}
{{- $root := .root }}
{{- range $key := .keys }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "orders.secretName" $root }}
      key: {{ $key }}
{{- end }}
{{- range $key := .optional }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "orders.secretName" $root }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}

{{/* Volumes: a writable /tmp (the root filesystem is read-only) and the Temporal TLS files. */}}
{{- define "orders.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and (include "orders.tlsEnabled" .) .Values.temporal.tls.existingSecret }}
- name: temporal-tls
  secret:
    secretName: {{ .Values.temporal.tls.existingSecret }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "orders.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and (include "orders.tlsEnabled" .) .Values.temporal.tls.existingSecret }}
- name: temporal-tls
  mountPath: /etc/orders/temporal-tls
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
