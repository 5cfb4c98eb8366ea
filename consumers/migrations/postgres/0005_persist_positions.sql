-- How far each consumer group has applied each partition, written in the
-- transaction of the rows it applied. A redelivered event at or below its
-- partition's position is already in the tables and is not applied again; a
-- crash between the database commit and the bus commit costs nothing.
-- Positions compare as (hi, lo): a Kafka offset is (offset, 0), a Redis
-- Streams id `ms-seq` is (ms, seq).
CREATE TABLE persist_positions (
    group_id    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    applied_hi  bigint  NOT NULL,
    applied_lo  bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
