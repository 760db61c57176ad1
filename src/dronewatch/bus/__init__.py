"""Scale-out over NATS JetStream: many agents publish batches, several services consume them.

Topology: every agent (or replay) publishes each batch of records to the subject
`dronewatch.batches.<agent>` of the durable stream `DRONEWATCH` (file storage), with the batch id
as the JetStream message id, so a batch re-published after a lost acknowledgement is stored once.
Every `dronewatch serve --consume` pulls from one shared durable consumer, `dronewatch-ingest`,
so the services share the work like a queue group, and acknowledges a batch only after its
database transaction committed. A service that dies mid-batch leaves the batch unacknowledged:
JetStream hands it to another service after the ack wait, and the database, which remembers every
batch id in the same transaction as the batch's rows, applies it exactly once.
"""
