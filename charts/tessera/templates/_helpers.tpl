{{/* The image of a component: registry/name:tag, tag defaulting to the chart's appVersion. */}}
{{- define "tessera.image" -}}
{{- $img := index .root.Values .component "image" -}}
{{- printf "%s/%s:%s" (.root.Values.image.registry | trimSuffix "/") $img.name (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "tessera.labels" -}}
app.kubernetes.io/part-of: tessera
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* The ServiceAccount user name of a component, for policies and bindings. */}}
{{- define "tessera.serviceAccountUser" -}}
system:serviceaccount:{{ .root.Release.Namespace }}:{{ .name }}
{{- end -}}

{{/* The KubeSchedulerConfiguration: values scheduler.config, with the
lease in the release namespace (the scheduler's Role allows it there). */}}
{{- define "tessera.schedulerConfig" -}}
{{- $c := deepCopy .Values.scheduler.config -}}
{{- $le := default (dict) $c.leaderElection -}}
{{- $_ := set $le "resourceNamespace" .Release.Namespace -}}
{{- $_ := set $c "leaderElection" $le -}}
{{- $_ := set $c "apiVersion" "kubescheduler.config.k8s.io/v1" -}}
{{- $_ := set $c "kind" "KubeSchedulerConfiguration" -}}
{{- toYaml $c -}}
{{- end -}}
