{{/* Labels on every object of this chart (the dagster subchart labels its own). */}}
{{- define "ccat.labels" -}}
app.kubernetes.io/name: ccat-workflow-manager
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The user-code image; the tag defaults to the chart's appVersion. */}}
{{- define "ccat.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Namespace of the reduction Jobs (hpcBackend=kubernetes): the release's unless set. */}}
{{- define "ccat.jobNamespace" -}}
{{ .Values.kubernetes.jobNamespace | default .Release.Namespace }}
{{- end }}

{{/*
The webserver `ccat-wm apply` asks to reload the code location. The dagster subchart names its
objects "<release>-dagster" (or "<release>" when the release name contains "dagster").
*/}}
{{- define "ccat.dagsterWebserverUrl" -}}
{{- if .Values.settings.dagsterWebserverUrl -}}
{{ .Values.settings.dagsterWebserverUrl }}
{{- else -}}
{{- $fullname := printf "%s-dagster" .Release.Name -}}
{{- if contains "dagster" .Release.Name -}}
{{- $fullname = .Release.Name -}}
{{- end -}}
{{ printf "http://%s-webserver.%s:80" ($fullname | trunc 63 | trimSuffix "-") .Release.Namespace }}
{{- end -}}
{{- end }}
