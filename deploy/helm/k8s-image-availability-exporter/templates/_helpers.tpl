{{/* The objects' name: fullnameOverride, else the release name when it
contains the chart's name, else both (as the Go chart names them). */}}
{{- define "kiae.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Helm's standard labels, on every object. */}}
{{- define "kiae.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name (.Chart.Version | replace "+" "_") }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Deployment's selector: the Go chart's, so that `helm upgrade` of a
release installed with it keeps its immutable selector. */}}
{{- define "kiae.selector" -}}
app: {{ include "kiae.fullname" . }}
{{- end -}}

{{/* Whether some argument starts with the flag $flag (`--x` or `--x=...`). */}}
{{- define "kiae.hasFlag" -}}
{{- $found := false -}}
{{- range .args -}}
{{- $a := toString . -}}
{{- if or (eq $a $.flag) (hasPrefix (printf "%s=" $.flag) $a) -}}{{- $found = true -}}{{- end -}}
{{- end -}}
{{- if $found -}}yes{{- end -}}
{{- end -}}

{{/* The exporter's arguments: the user's as given, then what our keys add. */}}
{{- define "kiae.args" -}}
{{- $args := list -}}
{{- range .Values.k8sImageAvailabilityExporter.args -}}{{- $args = append $args (toString .) -}}{{- end -}}
{{- if and (eq .Values.seriesFormat "lean") (not (include "kiae.hasFlag" (dict "args" $args "flag" "--one-series-per-container"))) -}}
{{- $args = append $args "--one-series-per-container" -}}
{{- end -}}
{{- if and (not .Values.k8sImageAvailabilityExporter.useSecretsForPrivateRepositories) (not (include "kiae.hasFlag" (dict "args" $args "flag" "--no-secrets"))) -}}
{{- $args = append $args "--no-secrets" -}}
{{- end -}}
{{- if .Values.watchNamespaces -}}
{{- range .Values.watchNamespaces -}}{{- $args = append $args (printf "--namespace=%s" .) -}}{{- end -}}
{{- if not (include "kiae.hasFlag" (dict "args" $args "flag" "--no-platform-check")) -}}
{{- $args = append $args "--no-platform-check" -}}
{{- end -}}
{{- end -}}
{{- if .Values.credentialProvider.cloud -}}
{{- $args = append $args "--image-credential-provider-config=/etc/credential-provider/config.yaml" -}}
{{- $args = append $args "--image-credential-provider-bin-dir=/plugins" -}}
{{- end -}}
{{- range .Values.extraArgs -}}{{- $args = append $args (toString .) -}}{{- end -}}
{{- toJson $args -}}
{{- end -}}

{{/* The rules the exporter needs: exactly what it lists and watches
(tests/helm_chart.rs checks them against the code's streams). $cluster:
the ClusterRole's, with the cluster-scoped kinds. */}}
{{- define "kiae.rules" -}}
{{- $root := .root -}}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "watch"]
- apiGroups: ["batch"]
  resources: ["cronjobs", "jobs"]
  verbs: ["list", "watch"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["serviceaccounts", "pods"]
  verbs: ["list", "watch"]
{{- if .cluster }}
- apiGroups: [""]
  resources: ["namespaces", "nodes"]
  verbs: ["list", "watch"]
{{- end }}
{{- if $root.Values.k8sImageAvailabilityExporter.useSecretsForPrivateRepositories }}
# Only pull secrets are requested (field selectors on the type), but RBAC
# cannot say so: this grants list and watch on all Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
{{- end }}
{{- with $root.Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The credential provider config of the chosen cloud. */}}
{{- define "kiae.providerConfig" -}}
{{- if .Values.credentialProvider.config -}}
{{- .Values.credentialProvider.config -}}
{{- else -}}
{{- .Files.Get (printf "files/credential-provider-%s.yaml" .Values.credentialProvider.cloud) -}}
{{- end -}}
{{- end -}}

{{/* The plugin's binary name per cloud. */}}
{{- define "kiae.plugin" -}}
{{- get (dict "eks" "ecr-credential-provider" "gke" "auth-provider-gcp" "aks" "acr-credential-provider") .Values.credentialProvider.cloud -}}
{{- end -}}

{{/* The image repository. The Go exporter's own (its chart's default,
copied into many values files) holds no build of ours: it reads as our
default, so such a file needs no edit. */}}
{{- define "kiae.repository" -}}
{{- $repo := .Values.k8sImageAvailabilityExporter.image.repository -}}
{{- if eq $repo "registry.deckhouse.io/k8s-image-availability-exporter/k8s-image-availability-exporter" -}}
k8s-image-availability-exporter
{{- else -}}
{{- $repo -}}
{{- end -}}
{{- end -}}
