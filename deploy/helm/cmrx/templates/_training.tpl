{{/* Pod template of a training run: `cmrx corpus` (init container) then `cmrx train` on a GPU. */}}
{{- define "cmrx.trainingPodTemplate" -}}
{{- $t := .Values.training -}}
{{- $component := dict "ctx" . "component" "training" -}}
{{- $gpu := dict "nvidia.com/gpu" (int $t.gpus) -}}
{{- $requests := mustMergeOverwrite (deepCopy (default (dict) $t.resources.requests)) $gpu -}}
{{- $limits := mustMergeOverwrite (deepCopy (default (dict) $t.resources.limits)) $gpu -}}
{{- $baseModel := include "cmrx.baseModel" . -}}
metadata:
  labels:
    {{- include "cmrx.selectorLabels" $component | nindent 4 }}
  annotations:
    checksum/config: {{ include "cmrx.settings" . | sha256sum }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "cmrx.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "cmrx.podSecurityContext" . | nindent 4 }}
  initContainers:
    # Reads topics.extractions and topics.reviewed into the training corpus (in the registry volume).
    - name: corpus
      image: {{ include "cmrx.trainingImage" . }}
      imagePullPolicy: {{ .Values.trainingImage.pullPolicy }}
      command: ["cmrx", "corpus"]
      {{- with $t.corpusArgs }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        {{- include "cmrx.trainingEnv" . | nindent 8 }}
      resources:
        requests:
          cpu: 500m
          memory: 1Gi
        limits:
          cpu: "2"
          memory: 4Gi
      securityContext:
        {{- include "cmrx.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        {{- include "cmrx.trainingVolumeMounts" . | nindent 8 }}
  containers:
    # LoRA fine-tune of the student; writes the adapter into the registry volume.
    - name: train
      image: {{ include "cmrx.trainingImage" . }}
      imagePullPolicy: {{ .Values.trainingImage.pullPolicy }}
      command: ["cmrx", "train"]
      {{- with $t.trainArgs }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        {{- include "cmrx.trainingEnv" . | nindent 8 }}
      resources:
        requests:
          {{- toYaml $requests | nindent 10 }}
        limits:
          {{- toYaml $limits | nindent 10 }}
      securityContext:
        {{- include "cmrx.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        {{- include "cmrx.trainingVolumeMounts" . | nindent 8 }}
        - name: dshm
          mountPath: /dev/shm
  volumes:
    {{- include "cmrx.volumes" (dict "ctx" . "tmpSize" $t.cacheSizeLimit) | nindent 4 }}
    - name: registry
      persistentVolumeClaim:
        claimName: {{ include "cmrx.registryClaim" . }}
    {{- if .Values.vllm.model.existingClaim }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ .Values.vllm.model.existingClaim }}
        readOnly: true
    {{- end }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: 4Gi
  {{- with $t.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "cmrx.trainingEnv" -}}
{{ include "cmrx.env" . }}
- name: HF_HOME
  value: /tmp/.cache/huggingface
- name: HF_HUB_OFFLINE
  value: "1"
- name: TRITON_CACHE_DIR
  value: /tmp/.cache/triton
{{- with (include "cmrx.baseModel" .) }}
- name: CMRX_LLM__MODEL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.training.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "cmrx.trainingVolumeMounts" -}}
{{ include "cmrx.volumeMounts" . }}
- name: registry
  mountPath: {{ .Values.runtime.stateDir }}
{{- if .Values.vllm.model.existingClaim }}
- name: models
  mountPath: /models
  {{- with .Values.vllm.model.subPath }}
  subPath: {{ . }}
  {{- end }}
  readOnly: true
{{- end }}
{{- end -}}
