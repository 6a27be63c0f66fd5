{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "cmrx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cmrx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>" within 63 characters (or "max": CronJob names allow 52), the prefix
shortened first. Call with (dict "ctx" $ "component" "x" ["max" 52]). */}}
{{- define "cmrx.componentName" -}}
{{- $max := int (default 63 .max) -}}
{{- printf "%s-%s" (include "cmrx.fullname" .ctx | trunc (int (sub (sub $max 1) (len .component))) | trimSuffix "-") .component | trunc $max | trimSuffix "-" -}}
{{- end -}}

{{- define "cmrx.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cmrx.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------------- */}}

{{- define "cmrx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "cmrx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cmrx
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component. Call with (dict "ctx" $ "component" "consumer"). */}}
{{- define "cmrx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cmrx.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cmrx.componentLabels" -}}
{{ include "cmrx.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images ----------------------------------------------------------------------------------- */}}

{{- define "cmrx.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cmrx.trainingImage" -}}
{{- printf "%s:%s" .Values.trainingImage.repository (default (printf "%s-llm" .Chart.AppVersion) .Values.trainingImage.tag) -}}
{{- end -}}

{{/* Settings --------------------------------------------------------------------------------- */}}

{{- define "cmrx.kafkaTlsDir" -}}/etc/cmrx/kafka-tls{{- end -}}

{{- define "cmrx.vllmUrl" -}}
{{- if .Values.llm.vllmUrl -}}
{{- .Values.llm.vllmUrl -}}
{{- else if .Values.vllm.enabled -}}
{{- printf "http://%s.%s.svc:%d/v1" (include "cmrx.componentName" (dict "ctx" . "component" "vllm")) .Release.Namespace (int .Values.vllm.service.port) -}}
{{- else -}}
http://localhost:8000/v1
{{- end -}}
{{- end -}}

{{/* Base model path for training: llm.model, else the vLLM model path when the model PVC is mounted. */}}
{{- define "cmrx.baseModel" -}}
{{- if .Values.llm.model -}}
{{- .Values.llm.model -}}
{{- else if .Values.vllm.model.existingClaim -}}
{{- .Values.vllm.model.path -}}
{{- end -}}
{{- end -}}

{{/* The CMRX_CONFIG YAML (snake_case keys of cmrx/config.py). No secret ever goes in here. */}}
{{- define "cmrx.settings" -}}
{{- $v := .Values -}}
{{- $kafka := dict "bootstrap_servers" $v.kafka.bootstrapServers "security_protocol" $v.kafka.securityProtocol "group_id" $v.kafka.groupId "transactional_id" $v.kafka.transactionalIdPrefix -}}
{{- if $v.kafka.saslMechanism }}{{- $_ := set $kafka "sasl_mechanism" $v.kafka.saslMechanism -}}{{- end -}}
{{- if $v.kafka.tls.existingSecret -}}
{{- if $v.kafka.tls.caKey }}{{- $_ := set $kafka "ssl_ca_location" (printf "%s/%s" (include "cmrx.kafkaTlsDir" .) $v.kafka.tls.caKey) -}}{{- end -}}
{{- if $v.kafka.tls.certKey }}{{- $_ := set $kafka "ssl_certificate_location" (printf "%s/%s" (include "cmrx.kafkaTlsDir" .) $v.kafka.tls.certKey) -}}{{- end -}}
{{- if $v.kafka.tls.keyKey }}{{- $_ := set $kafka "ssl_key_location" (printf "%s/%s" (include "cmrx.kafkaTlsDir" .) $v.kafka.tls.keyKey) -}}{{- end -}}
{{- end -}}
{{- with $v.kafka.extra }}{{- $_ := set $kafka "extra" . -}}{{- end -}}
{{- $topics := dict "reports" $v.topics.reports "observations" $v.topics.observations "review" $v.topics.review "extractions" $v.topics.extractions "dlq" $v.topics.dlq "reviewed" $v.topics.reviewed "models" $v.topics.models "partitions" (int $v.topics.partitions) "replication_factor" (int $v.topics.replicationFactor) -}}
{{- $extraction := dict "backend" $v.extraction.backend "threshold" $v.extraction.threshold "samples" (int $v.extraction.samples) "temperature" $v.extraction.temperature "combiner" $v.extraction.combiner -}}
{{- $llm := dict "vllm_url" (include "cmrx.vllmUrl" .) "vllm_model" $v.llm.vllmModel "concurrency" (int $v.llm.concurrency) "timeout_s" $v.llm.timeoutS "max_new_tokens" (int $v.llm.maxNewTokens) -}}
{{- with $v.llm.adapter }}{{- $_ := set $llm "adapter" . -}}{{- end -}}
{{- with $v.llm.model }}{{- $_ := set $llm "model" . -}}{{- end -}}
{{- $runtime := dict "log_level" $v.runtime.logLevel "metrics_port" (int $v.runtime.metricsPort) "batch_size" (int $v.runtime.batchSize) "state_dir" $v.runtime.stateDir "mllp_host" "0.0.0.0" "mllp_port" (int $v.mllp.port) -}}
{{- with $v.runtime.workers }}{{- $_ := set $runtime "workers" (int .) -}}{{- end -}}
{{- $settings := dict "kafka" $kafka "topics" $topics "extraction" $extraction "llm" $llm "runtime" $runtime -}}
{{- $settings = mustMergeOverwrite $settings (deepCopy $v.extraConfig) -}}
{{- toYaml $settings -}}
{{- end -}}

{{/* Environment shared by every cmrx container: config file, secrets by reference, writable HOME. */}}
{{- define "cmrx.env" -}}
- name: CMRX_CONFIG
  value: /etc/cmrx/config/cmrx.yaml
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if .Values.kafka.sasl.existingSecret }}
- name: CMRX_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: CMRX_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end -}}

{{/* The vLLM API key, for the consumer only. */}}
{{- define "cmrx.llmApiKeyEnv" -}}
{{- if .Values.llm.apiKey.existingSecret }}
- name: CMRX_LLM__VLLM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.llm.apiKey.existingSecret }}
      key: {{ .Values.llm.apiKey.key }}
{{- end }}
{{- end -}}

{{/* Volume mounts shared by every cmrx container. */}}
{{- define "cmrx.volumeMounts" -}}
- name: config
  mountPath: /etc/cmrx/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "cmrx.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes shared by every cmrx pod. Call with (dict "ctx" $ "tmpSize" "1Gi"). */}}
{{- define "cmrx.volumes" -}}
- name: config
  configMap:
    name: {{ include "cmrx.fullname" .ctx }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSize }}
{{- if .ctx.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .ctx.Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "cmrx.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "cmrx.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* Checks that fail the render with a message instead of deploying something broken. */}}
{{- define "cmrx.validate" -}}
{{- $v := .Values -}}
{{- if and $v.consumer.enabled (not $v.consumer.autoscaling.enabled) (gt (int $v.consumer.replicas) (int $v.topics.partitions)) -}}
{{- fail (printf "consumer.replicas (%d) exceeds topics.partitions (%d): the extra consumers would sit idle" (int $v.consumer.replicas) (int $v.topics.partitions)) -}}
{{- end -}}
{{- if and $v.consumer.enabled $v.consumer.autoscaling.enabled -}}
{{- if gt (int $v.consumer.autoscaling.maxReplicaCount) (int $v.topics.partitions) -}}
{{- fail (printf "consumer.autoscaling.maxReplicaCount (%d) exceeds topics.partitions (%d): KEDA would start consumers that get no partition" (int $v.consumer.autoscaling.maxReplicaCount) (int $v.topics.partitions)) -}}
{{- end -}}
{{- if gt (int $v.consumer.autoscaling.minReplicaCount) (int $v.consumer.autoscaling.maxReplicaCount) -}}
{{- fail "consumer.autoscaling.minReplicaCount exceeds maxReplicaCount" -}}
{{- end -}}
{{- if and $v.consumer.autoscaling.allowIdleConsumers $v.consumer.autoscaling.limitToPartitionsWithLag -}}
{{- fail "consumer.autoscaling: allowIdleConsumers and limitToPartitionsWithLag cannot both be true" -}}
{{- end -}}
{{- end -}}
{{- if and (hasPrefix "SASL_" $v.kafka.securityProtocol) (not $v.kafka.saslMechanism) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.saslMechanism" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and $v.kafka.saslMechanism (ne $v.kafka.saslMechanism "OAUTHBEARER") (not $v.kafka.sasl.existingSecret) -}}
{{- fail "kafka.saslMechanism is set: name the Secret with the credentials in kafka.sasl.existingSecret (never put them in values)" -}}
{{- end -}}
{{- if and (eq $v.extraction.backend "vllm") (not $v.vllm.enabled) (not $v.llm.vllmUrl) -}}
{{- fail "extraction.backend is vllm: enable vllm or set llm.vllmUrl" -}}
{{- end -}}
{{- if and $v.vllm.enabled (not $v.vllm.model.existingClaim) (not $v.vllm.model.download.enabled) -}}
{{- fail "vllm.enabled: set vllm.model.existingClaim (PVC with the weights) or enable vllm.model.download" -}}
{{- end -}}
{{- if and (or $v.training.job.enabled $v.training.cronJob.enabled) (not (or $v.registry.existingClaim $v.registry.create)) -}}
{{- fail "training writes adapters to the registry volume: set registry.existingClaim or registry.create" -}}
{{- end -}}
{{- if and $v.vllm.enabled $v.vllm.lora.modules (not (or $v.registry.existingClaim $v.registry.create)) -}}
{{- fail "vllm.lora.modules point into the adapter registry: set registry.existingClaim or registry.create" -}}
{{- end -}}
{{- end -}}

{{- define "cmrx.registryClaim" -}}
{{- default (include "cmrx.componentName" (dict "ctx" . "component" "registry")) .Values.registry.existingClaim -}}
{{- end -}}

{{- define "cmrx.hasRegistry" -}}
{{- if or .Values.registry.existingClaim .Values.registry.create -}}true{{- end -}}
{{- end -}}
