"""Kafka consumer side: input codecs, the consume-extract-produce loop, FHIR mapping, routing."""
