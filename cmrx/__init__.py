"""cmrx: structured, coded, confidence-scored data from free-text cardiac MRI reports on Kafka."""

__version__ = "0.1.0"
