{{/* Names and labels shared by every template. */}}
{{- define "palisade.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "palisade.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: palisade
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "palisade.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "palisade.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}

{{/* The audit database URL: the bundled Postgres, or the external DSN Secret. */}}
{{- define "palisade.auditEnv" -}}
{{- if .Values.postgres.bundled.enabled }}
- name: PALISADE_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "palisade.fullname" . }}-postgres
      key: password
- name: PALISADE_AUDIT_URL
  value: {{ printf "postgres://palisade:$(PALISADE_POSTGRES_PASSWORD)@%s-postgres:5432/palisade" (include "palisade.fullname" .) | quote }}
{{- else }}
- name: PALISADE_AUDIT_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "postgres.external.secretName is required unless postgres.bundled.enabled" .Values.postgres.external.secretName }}
      key: {{ .Values.postgres.external.secretKey }}
{{- end }}
{{- end -}}

{{/* The container security context every Palisade container runs with. */}}
{{- define "palisade.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Egress every Palisade pod needs: DNS, the API server, PostgreSQL. */}}
{{- define "palisade.egressCommon" -}}
# DNS
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels: {k8s-app: kube-dns}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
# The Kubernetes API server
- to:
    - ipBlock: {cidr: {{ .Values.networkPolicy.apiServerCIDR }}}
  ports:
    - {protocol: TCP, port: {{ .Values.networkPolicy.apiServerPort }}}
# PostgreSQL
{{- if .Values.postgres.bundled.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "palisade.selector" (dict "root" . "component" "postgres") | nindent 10 }}
  ports:
    - {protocol: TCP, port: 5432}
{{- else if .Values.networkPolicy.postgresCIDR }}
- to:
    - ipBlock: {cidr: {{ .Values.networkPolicy.postgresCIDR }}}
  ports:
    - {protocol: TCP, port: 5432}
{{- end }}
{{- end }}
