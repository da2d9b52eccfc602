{{- define "old.name" -}}old{{- end }}
