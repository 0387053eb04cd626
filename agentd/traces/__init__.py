"""Every run as an OpenTelemetry trace: spans built from the audit log, exported over OTLP/HTTP
with a durable cursor (exporter), and shown in the terminal by `agentd trace CID` (timeline).

ids (span ids both the pipeline and the exporter derive) is a leaf: it imports nothing of agentd.
"""
