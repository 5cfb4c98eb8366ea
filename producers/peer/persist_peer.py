"""The peer baseline of `scoutstream bench --peer`: the persist job as a user would
write it in Python instead of running scoutstream. It reads match events from Redis
Streams (redis-py XREADGROUP) or Kafka (confluent-kafka), decodes them with fastavro,
upserts matches and player rows with psycopg2's execute_values, commits, then acks
(XACK, or a synchronous offset commit). It does less than the persist group: no hero
pools, no teams or picks and bans, no merge rules by source (the last write wins).

It stops after --events events and prints one JSON line: events, player rows,
seconds (from the first read, which joins the group, to the last ack), CPU seconds and peak RSS of this process.
"""

import argparse
import io
import json
import resource
import time

import fastavro
import psycopg2
import psycopg2.extras

BATCH = 500

TABLES = """
CREATE TABLE IF NOT EXISTS peer_matches (
  match_id bigint PRIMARY KEY, start_time bigint, duration_secs int, radiant_win bool,
  game_mode int, lobby_type int, league_id bigint, cluster int, source text,
  updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS peer_player_matches (
  match_id bigint, player_slot int, account_id bigint, hero_id int, kills int, deaths int,
  assists int, last_hits int, denies int, gold_per_min int, xp_per_min int, level int,
  hero_damage bigint, tower_damage bigint, hero_healing bigint, net_worth bigint,
  items int[], persona_name text, PRIMARY KEY (match_id, player_slot));
"""
PLAYER_COLUMNS = ("account_id", "hero_id", "kills", "deaths", "assists", "last_hits", "denies",
                  "gold_per_min", "xp_per_min", "level", "hero_damage", "tower_damage",
                  "hero_healing", "net_worth", "items", "persona_name")


def upsert(cur, table, key, columns, rows):
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES %s "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}",
        rows, page_size=1000)


def store(conn, schema, header, payloads):
    matches, players = {}, {}
    for payload in payloads:
        m = fastavro.schemaless_reader(io.BytesIO(payload[header:]), schema)
        matches[m["match_id"]] = (m["match_id"], m["start_time"], m["duration_secs"],
                                  m["radiant_win"], m["game_mode"], m["lobby_type"],
                                  m["league_id"], m["cluster"], m["source"])
        for p in m["players"]:
            players[(m["match_id"], p["player_slot"])] = (
                m["match_id"], p["player_slot"], *(p[c] for c in PLAYER_COLUMNS))
    with conn.cursor() as cur:
        upsert(cur, "peer_matches", ("match_id",),
               ("match_id", "start_time", "duration_secs", "radiant_win", "game_mode",
                "lobby_type", "league_id", "cluster", "source"), list(matches.values()))
        upsert(cur, "peer_player_matches", ("match_id", "player_slot"),
               ("match_id", "player_slot", *PLAYER_COLUMNS), list(players.values()))
    conn.commit()
    return len(players)


def from_redis(args):
    import redis
    r = redis.Redis.from_url(args.redis_url)
    streams = [f"{args.streams}:{p}" for p in range(args.partitions)]
    for s in streams:
        try:
            r.xgroup_create(s, args.group, id="0", mkstream=True)
        except redis.ResponseError:
            pass  # the group exists
    while True:
        reply = r.xreadgroup(args.group, "peer-1", {s: ">" for s in streams}, count=BATCH, block=1000)
        entries = [(s.decode(), eid, f[b"v"]) for s, got in reply for eid, f in got]
        if entries:
            yield [e[2] for e in entries], lambda e=entries: ack_redis(r, args.group, e)


def ack_redis(r, group, entries):
    pipe = r.pipeline(transaction=False)
    for stream, entry_id, _ in entries:
        pipe.xack(stream, group, entry_id)
    pipe.execute()


def from_kafka(args):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([args.topic])
    while True:
        msgs = [m for m in c.consume(num_messages=BATCH, timeout=1.0) if m.error() is None]
        if msgs:
            yield [m.value() for m in msgs], lambda: c.commit(asynchronous=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["redis-streams", "kafka"], required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--schema", required=True, help="MatchCompleted.avsc")
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--header", type=int, default=10,
                    help="bytes before the Avro body: 10 single-object, 5 Confluent")
    ap.add_argument("--group", default="peer-persist")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    ap.add_argument("--streams", help="stream key without its :partition suffix")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic")
    args = ap.parse_args()

    schema = fastavro.parse_schema(json.load(open(args.schema)))
    conn = psycopg2.connect(args.dsn)
    with conn.cursor() as cur:
        cur.execute(TABLES)
    conn.commit()
    source = from_redis(args) if args.backend == "redis-streams" else from_kafka(args)
    events = rows = 0
    started = time.monotonic()
    for payloads, ack in source:
        rows += store(conn, schema, args.header, payloads)
        ack()
        events += len(payloads)
        if events >= args.events:
            break
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"events": events, "player_rows": rows,
                      "seconds": time.monotonic() - started,
                      "cpu_s": usage.ru_utime + usage.ru_stime,
                      "peak_rss_kib": usage.ru_maxrss}))


if __name__ == "__main__":
    main()
