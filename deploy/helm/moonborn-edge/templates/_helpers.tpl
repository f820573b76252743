{{/* The release's full name, cut to the 63 characters of a DNS label. */}}
{{- define "moonborn-edge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "moonborn-edge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "moonborn-edge.labels" -}}
{{ include "moonborn-edge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The gateway config text: values.config, else files/config.yaml. */}}
{{- define "moonborn-edge.config" -}}
{{- if .Values.config -}}
{{ .Values.config }}
{{- else -}}
{{ .Files.Get "files/config.yaml" }}
{{- end -}}
{{- end -}}

{{- define "moonborn-edge.secretName" -}}
{{- default (include "moonborn-edge.fullname" .) .Values.existingSecret -}}
{{- end -}}
