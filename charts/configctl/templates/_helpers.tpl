{{- define "configctl.name" -}}{{ .Release.Name }}-configctl{{- end -}}
{{- define "configctl.labels" -}}
app.kubernetes.io/name: configctl
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "configctl.selector" -}}
app.kubernetes.io/name: configctl
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
