"""Getting reports onto Kafka: file publisher, topic tail, MLLP bridge."""
