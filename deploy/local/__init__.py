"""The local stack (real Kafka + Elasticsearch, no Docker): see stack.py and README.md here."""

from stimmung.localstack.stack import LocalStack, ServiceStatus, StackError

__all__ = ["LocalStack", "ServiceStatus", "StackError"]
