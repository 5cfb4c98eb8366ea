#!/usr/bin/env python3
"""Interop publisher: events framed by Confluent's own clients, not ours.

The integration tests call it (with the python scripts/python-env.sh prints) to publish
matches and player profiles through confluent-kafka's AvroSerializer and
SchemaRegistryClient, so they can check that our consumers read records a Confluent
producer wrote: magic byte 0, 4-byte big-endian schema id, Avro binary.

    confluent_avro_publish.py --brokers HOST:PORT --registry URL --input events.jsonl

Each input line: {"topic": ..., "key": ..., "schema_file": "<.avsc>", "value": {...}}, the
value as serde_json writes our structs (null or the bare value for optional fields, nested
records as objects), which fastavro's union resolution accepts as is. Subjects follow
TopicNameStrategy (<topic>-value); schemas are registered automatically. Prints
`published N events; schema ids: {...}` (ids as read from the framed payloads); exits
non-zero on any serialization, registry or delivery error.
"""
import argparse
import json
import struct
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True, help="bootstrap servers, HOST:PORT")
    parser.add_argument("--registry", required=True, help="Confluent-compatible registry URL")
    parser.add_argument("--input", required=True, help="JSON lines of {topic, key, schema_file, value}")
    args = parser.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    producer = Producer({"bootstrap.servers": args.brokers, "acks": "all", "linger.ms": 5,
                         "message.timeout.ms": 30000})
    serializers, schema_ids, errors = {}, {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.topic()}: {err}")

    count = 0
    with open(args.input, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                topic, schema_file = event["topic"], event["schema_file"]
                if (topic, schema_file) not in serializers:
                    with open(schema_file, encoding="utf-8") as f:
                        serializers[topic, schema_file] = AvroSerializer(registry, schema_str=f.read())
                payload = serializers[topic, schema_file](
                    event["value"], SerializationContext(topic, MessageField.VALUE))
            except Exception as e:  # noqa: BLE001 - any failure is fatal, say where
                sys.exit(f"{args.input}:{number}: {type(e).__name__}: {e}")
            if payload[:1] != b"\x00":
                sys.exit(f"{args.input}:{number}: payload is not Confluent-framed: {payload[:5]!r}")
            schema_ids[f"{topic}-value"] = struct.unpack(">I", payload[1:5])[0]
            key = event.get("key")
            while True:
                try:
                    producer.produce(topic, value=payload, on_delivery=on_delivery,
                                     key=None if key is None else key.encode("utf-8"))
                    break
                except BufferError:
                    producer.poll(0.5)
            producer.poll(0)
            count += 1

    left = producer.flush(60)
    if left:
        errors.append(f"{left} messages still undelivered after flush")
    if errors:
        sys.exit("delivery failed: " + "; ".join(errors[:10]))
    print(f"published {count} events; schema ids: {json.dumps(schema_ids)}")


if __name__ == "__main__":
    main()
