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

{{/* The audit database URL (the runtime role's: INSERT and SELECT only),
from the bundled Postgres or the external DSN Secret, and the chain's key. */}}
{{- define "palisade.auditEnv" -}}
{{- if .Values.postgres.bundled.enabled }}
- name: PALISADE_POSTGRES_WRITER_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "palisade.fullname" . }}-postgres
      key: writer-password
- name: PALISADE_AUDIT_URL
  value: {{ printf "postgres://%s:$(PALISADE_POSTGRES_WRITER_PASSWORD)@%s-postgres:5432/palisade" .Values.postgres.runtimeRole (include "palisade.fullname" .) | quote }}
{{- else }}
- name: PALISADE_AUDIT_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "palisade.externalAuditSecret" . }}
      key: {{ .Values.postgres.external.secretKey }}
{{- end }}
- name: PALISADE_AUDIT_KEY_FILE
  value: /etc/palisade/audit-key/key
{{- end -}}

{{- define "palisade.externalAuditSecret" -}}
{{- required "postgres.external.secretName is required unless postgres.bundled.enabled" .Values.postgres.external.secretName -}}
{{- end -}}

{{/* The Secret holding the audit chain's key. */}}
{{- define "palisade.auditKeySecret" -}}
{{- .Values.audit.key.existingSecret | default (printf "%s-audit-key" (include "palisade.fullname" .)) -}}
{{- end -}}

{{/* The audit key, mounted read-only where PALISADE_AUDIT_KEY_FILE says. */}}
{{- define "palisade.auditKeyMount" -}}
- {name: audit-key, mountPath: /etc/palisade/audit-key, readOnly: true}
{{- end -}}

{{- define "palisade.auditKeyVolume" -}}
- name: audit-key
  secret:
    secretName: {{ include "palisade.auditKeySecret" . }}
    items: [{key: key, path: key}]
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
# The Kubernetes API server (6443 on kubeadm and kind, 443 on most managed
# clusters: NetworkPolicy sees the port after the Service is translated)
- to:
    - ipBlock: {cidr: {{ .Values.networkPolicy.apiServerCIDR }}}
  ports:
    {{- range .Values.networkPolicy.apiServerPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
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

{{/*
The MutatingAdmissionPolicy API version the cluster serves (policy and
binding both): "v1" (GA in Kubernetes 1.36), else "v1beta1" (1.34 and 1.35
with the feature gate and the beta API on), else "". Kind-qualified on
purpose: Helm's built-in capabilities (helm template or lint without a
cluster) list the group version admissionregistration.k8s.io/v1beta1
whether or not a cluster serves it, but no kinds.
*/}}
{{- define "palisade.mutatingAdmissionPolicyVersion" -}}
{{- $api := .Capabilities.APIVersions -}}
{{- if and ($api.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy") ($api.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicyBinding") -}}
v1
{{- else if and ($api.Has "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy") ($api.Has "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicyBinding") -}}
v1beta1
{{- end -}}
{{- end -}}

{{/*
The MutatingAdmissionPolicy version to render the decider stamp with, or ""
for none: approvals.admission.stampDecider "auto" follows what the cluster
serves, false never renders it, true insists (and fails the render when
the cluster serves neither version).
*/}}
{{- define "palisade.stampDeciderVersion" -}}
{{- $stamp := toString .Values.approvals.admission.stampDecider -}}
{{- $version := include "palisade.mutatingAdmissionPolicyVersion" . -}}
{{- if and .Values.approvals.admission.enabled (ne $stamp "false") -}}
{{- if and (eq $stamp "true") (not $version) -}}
{{- fail "approvals.admission.stampDecider is true, but this cluster serves no MutatingAdmissionPolicy API (admissionregistration.k8s.io/v1, Kubernetes 1.36+; or v1beta1 with the feature gate on 1.34-1.35). Set it to auto to install without (deciders then write their own name in spec.decidedBy, as kubectl palisade approve does), or turn the API on. helm template sees no cluster: pass --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicyBinding" -}}
{{- end -}}
{{- $version -}}
{{- end -}}
{{- end -}}

{{/* Pod metadata a component's values add: podLabels, podAnnotations.
(dict "root" . "component" .Values.gateway) */}}
{{- define "palisade.podMetadataExtras" -}}
{{- with .component.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Where and how a component's pods are scheduled: imagePullSecrets
(chart-wide), priorityClassName, nodeSelector, tolerations, affinity,
topologySpreadConstraints. */}}
{{- define "palisade.podScheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
