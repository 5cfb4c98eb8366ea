-- The persist group's tables, SQLite twin of postgres/0001_persist.sql
-- (STRICT tables; booleans are 0/1 INTEGER, JSON is TEXT).
-- Merge rules live in consumers/src/persist/mod.rs.
-- `source_rank` orders the sources of one match (higher wins a conflict);
-- `observed_at_ms` / `last_match_time` order the versions of a player / team.

CREATE TABLE matches (
    match_id          INTEGER PRIMARY KEY,
    match_seq_num     INTEGER,
    start_time        INTEGER NOT NULL,            -- unix seconds
    duration_secs     INTEGER NOT NULL CHECK (duration_secs >= 0),
    radiant_win       INTEGER NOT NULL,
    game_mode         INTEGER NOT NULL,
    lobby_type        INTEGER NOT NULL,
    league_id         INTEGER,                     -- NULL: no league known (the event's 0)
    cluster           INTEGER NOT NULL,
    radiant_team_id   INTEGER,
    radiant_team_name TEXT,
    dire_team_id      INTEGER,
    dire_team_name    TEXT,
    radiant_score     INTEGER,
    dire_score        INTEGER,
    source            TEXT NOT NULL,
    source_rank       INTEGER NOT NULL,
    updated_at        TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
) STRICT;

CREATE INDEX matches_radiant_team ON matches (radiant_team_id, start_time DESC)
    WHERE radiant_team_id IS NOT NULL;
CREATE INDEX matches_dire_team ON matches (dire_team_id, start_time DESC)
    WHERE dire_team_id IS NOT NULL;

CREATE TABLE player_matches (
    match_id       INTEGER NOT NULL REFERENCES matches (match_id) ON DELETE CASCADE,
    player_slot    INTEGER NOT NULL CHECK (player_slot BETWEEN 0 AND 255),
    account_id     INTEGER,                        -- NULL: anonymous
    hero_id        INTEGER NOT NULL,
    kills          INTEGER NOT NULL CHECK (kills >= 0),
    deaths         INTEGER NOT NULL CHECK (deaths >= 0),
    assists        INTEGER NOT NULL CHECK (assists >= 0),
    last_hits      INTEGER NOT NULL,
    denies         INTEGER NOT NULL,
    gold_per_min   INTEGER NOT NULL,
    xp_per_min     INTEGER NOT NULL,
    level          INTEGER NOT NULL,
    hero_damage    INTEGER,
    tower_damage   INTEGER,
    hero_healing   INTEGER,
    gold           INTEGER,
    gold_spent     INTEGER,
    net_worth      INTEGER,
    leaver_status  INTEGER,
    items          TEXT,                         -- [item id; 6], NULL when unknown
    backpack       TEXT,
    persona_name   TEXT,                          -- name shown in game
    is_radiant     INTEGER NOT NULL,
    won            INTEGER NOT NULL,
    start_time     INTEGER NOT NULL,               -- the match's, for per-account scans
    source_rank    INTEGER NOT NULL,
    PRIMARY KEY (match_id, player_slot)
) STRICT;

CREATE INDEX player_matches_account ON player_matches (account_id, start_time DESC)
    WHERE account_id IS NOT NULL;

CREATE TABLE picks_bans (
    match_id     INTEGER NOT NULL REFERENCES matches (match_id) ON DELETE CASCADE,
    ord          INTEGER NOT NULL,
    is_pick      INTEGER NOT NULL,
    hero_id      INTEGER NOT NULL,
    team         INTEGER NOT NULL CHECK (team IN (0, 1)),  -- 0 radiant, 1 dire
    source_rank  INTEGER NOT NULL,
    PRIMARY KEY (match_id, ord)
) STRICT;

CREATE TABLE teams (
    team_id          INTEGER PRIMARY KEY,
    name             TEXT,
    last_match_time  INTEGER NOT NULL,             -- newest match seen; its name wins
    updated_at       TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
) STRICT;

CREATE TABLE players (
    account_id        INTEGER PRIMARY KEY,
    persona_name      TEXT,
    rank_tier         INTEGER,
    leaderboard_rank  INTEGER,
    country           TEXT,
    last_seen         INTEGER,                     -- unix seconds
    avatar_url        TEXT,
    profile_url       TEXT,
    observed_at_ms    INTEGER NOT NULL,            -- newest profile merged in
    updated_at        TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
) STRICT;

-- Derived from player_matches, recomputed per account on every write.
CREATE TABLE hero_pool (
    account_id   INTEGER NOT NULL,
    hero_id      INTEGER NOT NULL,
    games        INTEGER NOT NULL,
    wins         INTEGER NOT NULL,
    last_played  INTEGER NOT NULL,                 -- unix seconds
    PRIMARY KEY (account_id, hero_id)
) STRICT;
