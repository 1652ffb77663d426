{{/*
The chart's name, or nameOverride.
*/}}
{{- define "leadstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' base name: fullnameOverride, else the release name (followed by the chart's
name unless it already contains it). Kept to 52 characters: the StatefulSet's pods add
`-<ordinal>` and the controller a revision hash to the labels it derives from it.
*/}}
{{- define "leadstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leadstream.headless" -}}
{{ include "leadstream.fullname" . }}-headless
{{- end }}

{{- define "leadstream.settingsName" -}}
{{ include "leadstream.fullname" . }}-settings
{{- end }}

{{/*
The labels that select the workers: the Kustomize base's two, and the release, so that two
releases in one namespace never select each other's pods. Never changed by an upgrade (a
StatefulSet's selector cannot be).
*/}}
{{- define "leadstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadstream.name" . }}
app.kubernetes.io/component: worker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leadstream.labels" -}}
{{ include "leadstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is given, else repository:tag.
*/}}
{{- define "leadstream.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: `latest` names no release; give a version or image.digest" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
A settings value as the ConfigMap holds it: a string as it is; a number as JSON writes it
(1000000, not the 1e+06 Go's %v gives a whole number read from YAML); a boolean as
true/false.
*/}}
{{- define "leadstream.settingValue" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/*
The HTTP port: LEADSTREAM_WEB_PORT if the settings give one, else the worker's default.
*/}}
{{- define "leadstream.webPort" -}}
{{- $given := index .Values.settings "LEADSTREAM_WEB_PORT" }}
{{- if $given }}{{ include "leadstream.settingValue" $given }}{{ else }}6066{{ end }}
{{- end }}

{{- define "leadstream.secretName" -}}
{{- $root := index . 0 }}{{ $given := index . 1 }}{{ $suffix := index . 2 }}
{{- $given | default (printf "%s-%s" (include "leadstream.fullname" $root) $suffix) }}
{{- end }}

{{/*
Settings the values must not hold: credentials (from Secrets only) and the variables the
StatefulSet sets itself, which would otherwise be overridden without a word. Checked with
the values that depend on the settings.
*/}}
{{- define "leadstream.checkSettings" -}}
{{- $own := list "LEADSTREAM_INSTANCE_ID" "LEADSTREAM_DATA_DIR" "LEADSTREAM_WEB_HOST" "LEADSTREAM_ADVERTISED_URL" "LEADSTREAM_AUTH_FILE" "LEADSTREAM_KAFKA_SSL_CA_FILE" }}
{{- $secret := list "LEADSTREAM_KAFKA_SASL_USERNAME" "LEADSTREAM_KAFKA_SASL_PASSWORD" "LEADSTREAM_CLUSTER_SECRET" "LEADSTREAM_SUPPRESSION_KEY" }}
{{- range $name, $value := .Values.settings }}
{{- if not (regexMatch "^LEADSTREAM_[A-Z0-9_]+$" $name) }}
{{- fail (printf "settings.%s: not a LEADSTREAM_* variable" $name) }}
{{- end }}
{{- if has $name $own }}
{{- fail (printf "settings.%s: set by the chart itself" $name) }}
{{- end }}
{{- if or (has $name $secret) (contains "PASSWORD" $name) }}
{{- fail (printf "settings.%s: a credential, taken from a Secret (see kafka.sasl, clusterSecret, suppressionKey)" $name) }}
{{- end }}
{{- end }}
{{- $protocol := index .Values.settings "LEADSTREAM_KAFKA_SECURITY_PROTOCOL" | default "PLAINTEXT" }}
{{- if .Values.kafka.sasl.enabled }}
{{- if not (has $protocol (list "SASL_SSL" "SASL_PLAINTEXT")) }}
{{- fail (printf "kafka.sasl.enabled needs settings.LEADSTREAM_KAFKA_SECURITY_PROTOCOL SASL_SSL or SASL_PLAINTEXT, not %s" $protocol) }}
{{- end }}
{{- if not (index .Values.settings "LEADSTREAM_KAFKA_SASL_MECHANISM") }}
{{- fail "kafka.sasl.enabled needs settings.LEADSTREAM_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" }}
{{- end }}
{{- end }}
{{- if and .Values.kafka.privateCA.enabled (not (has $protocol (list "SSL" "SASL_SSL"))) }}
{{- fail (printf "kafka.privateCA.enabled needs settings.LEADSTREAM_KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL, not %s" $protocol) }}
{{- end }}
{{- end }}
