{{/*
Labels of every object: the install's own (app.kubernetes.io/part-of, as
manifests/default sets it) and Helm's standard ones. Selectors never use
these: they keep manifests/default's name and component labels, which a
Deployment cannot change after creation.
*/}}
{{- define "policy-webhook.labels" -}}
app.kubernetes.io/part-of: policy-webhook
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the webhook's Pods. */}}
{{- define "policy-webhook.selectorLabels" -}}
app.kubernetes.io/name: policy-webhook
app.kubernetes.io/component: webhook
{{- end }}

{{/*
The image reference: repository:tag, repository@digest, or
repository:tag@digest when both are set. The tag defaults to appVersion.
*/}}
{{- define "policy-webhook.image" -}}
{{- $img := .Values.image -}}
{{- if and $img.digest (not $img.tag) -}}
{{ $img.repository }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $img.tag | default .Chart.AppVersion }}{{ with $img.digest }}@{{ . }}{{ end }}
{{- end -}}
{{- end }}

{{/* Whether the chart creates its own CA (no issuerRef given). */}}
{{- define "policy-webhook.ownCA" -}}
{{- if not .Values.certManager.issuerRef.name }}true{{ end -}}
{{- end }}
