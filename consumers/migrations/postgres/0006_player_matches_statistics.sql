-- A match has at most ten player rows. ANALYZE's sample of a table with
-- millions of rows guesses far fewer distinct match ids, so the planner
-- expected ~57 rows per id and read a batch's slots (`match_id = ANY(6,000
-- ids)`) with a parallel sequential scan of the whole table: 583 ms on 10
-- million rows, against 23 ms through the primary key with this hint.
ALTER TABLE player_matches ALTER COLUMN match_id SET (n_distinct = -0.1);
-- The hint counts from the next ANALYZE on.
ANALYZE player_matches;
