{{- define "ves.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ves.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ves.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ves.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ves.labels" -}}
{{ include "ves.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ves.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ves.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Watched namespaces as a comma-separated string: scope.namespaces, else env.WATCHED_NAMESPACES. */}}
{{- define "ves.watchedNamespaces" -}}
{{- if .Values.scope.namespaces -}}
{{- join "," .Values.scope.namespaces -}}
{{- else -}}
{{- $list := list -}}
{{- range (splitList "," (toString (default "" .Values.env.WATCHED_NAMESPACES))) -}}
{{- if trim . -}}{{- $list = append $list (trim .) -}}{{- end -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}
{{- end -}}

{{- define "ves.leaderElect" -}}
{{- if eq (toString .Values.leaderElection.enabled) "auto" -}}
{{- if gt (int .Values.replicaCount) 1 -}}true{{- else -}}false{{- end -}}
{{- else -}}
{{- ternary "true" "false" (eq (toString .Values.leaderElection.enabled) "true") -}}
{{- end -}}
{{- end -}}

{{- define "ves.metricsPort" -}}
{{- default 3001 .Values.env.METRICS_PORT -}}
{{- end -}}

{{/* The label matchers that select this controller's series in alerts. */}}
{{- define "ves.alertSelector" -}}
{{- default (printf "job=%q" (include "ves.fullname" .)) .Values.prometheusRule.selector -}}
{{- end -}}
