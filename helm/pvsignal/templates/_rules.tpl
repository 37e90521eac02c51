{{/* The alert rules (a test runs promtool check rules on them). Metric names come from
api/metrics.py and streams/metrics.py; a test checks each against live /metrics. */}}
{{- define "pvsignal.ruleGroups" -}}
{{- $ns := printf "namespace=%q" .Release.Namespace }}
- name: pvsignal.consumer
  rules:
    - alert: PvsignalConsumerLagGrowing
      expr: |
        sum by (namespace, topic) (pvsignal_consumer_lag{ {{- $ns -}} }) > {{ .Values.monitoring.prometheusRule.lagThreshold }}
        and
        sum by (namespace, topic) (deriv(pvsignal_consumer_lag{ {{- $ns -}} }[15m])) > 0
      for: 15m
      labels:
        severity: warning
      annotations:
        summary: "pvsignal consumers fall behind on {{`{{ $labels.topic }}`}}"
        description: "Lag is {{`{{ $value }}`}} messages and still growing: add consumers (up to the partition count) or look at the store's write time."
    - alert: PvsignalDeadLettersArriving
      expr: sum by (namespace, reason) (increase(pvsignal_reports_dead_lettered_total{ {{- $ns -}} }[10m])) > 0
      labels:
        severity: warning
      annotations:
        summary: "Poison reports go to the dead-letter topic ({{`{{ $labels.reason }}`}})"
        description: "{{`{{ $value }}`}} messages in 10 minutes: read {{ .Values.kafka.dlqTopic }} (headers error, error-detail, source-*)."
    - alert: PvsignalConsumerNotReady
      expr: max by (namespace, pod) (pvsignal_consumer_ready{ {{- $ns -}} }) == 0
      for: 5m
      labels:
        severity: critical
      annotations:
        summary: "pvsignal consumer {{`{{ $labels.pod }}`}} is not ready"
        description: "Its broker or store does not answer, or it holds no positioned partition."
- name: pvsignal.detection
  rules:
    - alert: PvsignalDetectorSlowerThanInterval
      expr: |
        histogram_quantile(0.9, sum by (namespace, job, le) (rate(pvsignal_detector_run_seconds_bucket{ {{- $ns -}} }[15m])))
        > {{ .Values.consumer.detectIntervalSeconds }}
      for: 30m
      labels:
        severity: warning
      annotations:
        summary: "Detector runs take longer than their {{ .Values.consumer.detectIntervalSeconds }} s interval ({{`{{ $labels.job }}`}})"
        description: "p90 run time {{`{{ $value | humanizeDuration }}`}}: signals lag behind the counts."
    - alert: PvsignalMgpsFitOnBound
      expr: max by (namespace, scope) (pvsignal_mgps_fit_parameters_on_bound{ {{- $ns -}} }) > 0
      for: 1h
      labels:
        severity: info
      annotations:
        summary: "The MGPS prior of scope {{`{{ $labels.scope }}`}} sits on a bound of its search"
        description: "{{`{{ $value }}`}} hyperparameters on a bound: EBGM in this scope rests on a poorly determined prior (see GET /v1/fits)."
- name: pvsignal.api
  rules:
    - alert: PvsignalApiNotReady
      # up is Prometheus' own series for each scraped target.
      expr: max by (namespace, pod) (up{ {{- $ns -}} , service={{ printf "%s-api" (include "pvsignal.fullname" .) | quote }}}) == 0
      for: 5m
      labels:
        severity: critical
      annotations:
        summary: "pvsignal API pod {{`{{ $labels.pod }}`}} cannot be scraped"
        description: "The pod is down or not answering /metrics."
    - alert: PvsignalApiErrors
      expr: |
        sum by (namespace, route) (rate(pvsignal_http_requests_total{ {{- $ns -}} , status=~"5.."}[10m]))
        / sum by (namespace, route) (rate(pvsignal_http_requests_total{ {{- $ns -}} }[10m])) > 0.05
      for: 10m
      labels:
        severity: warning
      annotations:
        summary: "More than 5 % of {{`{{ $labels.route }}`}} requests fail"
        description: "Server errors are {{`{{ $value | humanizePercentage }}`}} of the route's answers."
    - alert: PvsignalWebhookDeliveriesFailing
      expr: sum by (namespace) (increase(pvsignal_webhook_deliveries_total{ {{- $ns -}} , result="failed"}[15m])) > 0
      labels:
        severity: warning
      annotations:
        summary: "Webhook deliveries give up after every retry"
        description: "{{`{{ $value }}`}} deliveries failed for good in 15 minutes: a subscriber's endpoint is down or refuses them."
{{- end }}
