"""The consumer runtime: one generic consumer of the event log that runs a handler.

`handler.Handler` is what a part of the system implements to receive the log (the
profile pipeline, the outcome joiner, the warehouse copy); `consumer.LogConsumer` reads
one consumer group's share of the partitions and feeds it; `host.LoopHost` starts and
stops every background loop of a process together. See docs/adr/0013-consumer-runtime.md.
"""
