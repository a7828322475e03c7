{{/*
Labels every object of the release carries; `selectorLabels` is the part a selector may use (it
must never change over upgrades, since a DaemonSet's selector is immutable).
*/}}
{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "berth.labels" -}}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The config-sync pods: the PodMonitor and the uninstall hook select them by these. */}}
{{- define "berth.syncSelectorLabels" -}}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/component: config-sync
{{- end }}

{{/*
berthd's metrics listen address, "host:port" (an IPv6 host in brackets), from metrics.address and
metrics.port: the one place both the drop-in and the pod's declared port come from.
*/}}
{{- define "berth.metricsAddress" -}}
{{- $host := toString .Values.metrics.address -}}
{{- if contains ":" $host -}}
[{{ $host }}]:{{ .Values.metrics.port }}
{{- else -}}
{{ $host }}:{{ .Values.metrics.port }}
{{- end -}}
{{- end }}

{{/*
The drop-in written to <node.configDir>/config.d/50-helm.toml: files/config.toml or configOverride,
then the [metrics] table from the metrics values. berthd rejects a file that defines a table twice,
so a [metrics] table (or metrics.* key) of the user's own is refused here, with the reason, rather
than on every node.
*/}}
{{- define "berth.dropin" -}}
{{- $body := .Values.configOverride | default (.Files.Get "files/config.toml") -}}
{{- if regexMatch "(?m)^[ \\t]*(\\[[ \\t]*\"?metrics\"?[ \\t]*[.\\]]|\"?metrics\"?[ \\t]*[.=])" $body -}}
{{- fail "configOverride must not set [metrics]: berthd's metrics address comes from metrics.address and metrics.port (and metrics.enabled), so that the PodMonitor scrapes the port berthd listens on" -}}
{{- end -}}
# Managed by the berth Helm chart (release {{ .Release.Namespace }}/{{ .Release.Name }}): changes
# made here are overwritten. Set configOverride or the metrics values instead.

{{ trim $body }}

# From the chart's metrics values.
[metrics]
enabled = {{ .Values.metrics.enabled }}
address = {{ include "berth.metricsAddress" . | quote }}
{{- end }}

{{/* The `job` label of berthd's scrape target (the PodMonitor sets it; the alerts select by it). */}}
{{- define "berth.job" -}}
{{ .Values.metrics.job }}
{{- end }}

{{- define "berth.image" -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag }}
{{- end -}}
{{- end }}

{{/*
Kubernetes before 1.30 (kubelet 1.26-1.29, which Berth serves) rejects securityContext.appArmorProfile
and reads the AppArmor profile from a pod annotation instead.
*/}}
{{- define "berth.appArmorAsAnnotation" -}}
{{- if and (hasKey .Values.sync.securityContext "appArmorProfile") (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end }}

{{/* The sync container's securityContext, without appArmorProfile where the cluster predates it. */}}
{{- define "berth.syncSecurityContext" -}}
{{- $sc := deepCopy .Values.sync.securityContext -}}
{{- if include "berth.appArmorAsAnnotation" . -}}
{{- $_ := unset $sc "appArmorProfile" -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end }}

{{/* The annotation value of the sync container's AppArmor profile on clusters before 1.30, or nothing. */}}
{{- define "berth.legacyAppArmor" -}}
{{- if include "berth.appArmorAsAnnotation" . -}}
{{- $p := .Values.sync.securityContext.appArmorProfile -}}
{{- if eq $p.type "Unconfined" -}}unconfined
{{- else if eq $p.type "RuntimeDefault" -}}runtime/default
{{- else if eq $p.type "Localhost" -}}localhost/{{ $p.localhostProfile }}
{{- end -}}
{{- end -}}
{{- end }}
