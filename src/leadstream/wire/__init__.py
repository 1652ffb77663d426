"""What travels on Kafka: the internal commands, the output records and rejects, and the
pydantic models and JSON Schemas that document the topics."""

__all__: list[str] = []
