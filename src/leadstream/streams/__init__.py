"""The input side of the worker: the lead-events router (a child process reading with
confluent-kafka), the faust agents that route the other input topics and apply every
lead-keyed command to the lead table, and the handles and retries they share."""

__all__: list[str] = []
