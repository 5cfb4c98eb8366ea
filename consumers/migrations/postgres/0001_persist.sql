-- The persist group's tables. Merge rules live in consumers/src/persist/mod.rs.
-- `source_rank` orders the sources of one match (higher wins a conflict);
-- `observed_at_ms` / `last_match_time` order the versions of a player / team.

CREATE TABLE matches (
    match_id          BIGINT PRIMARY KEY,
    match_seq_num     BIGINT,
    start_time        BIGINT NOT NULL,            -- unix seconds
    duration_secs     INTEGER NOT NULL CHECK (duration_secs >= 0),
    radiant_win       BOOLEAN NOT NULL,
    game_mode         INTEGER NOT NULL,
    lobby_type        INTEGER NOT NULL,
    league_id         BIGINT,                     -- NULL: no league known (the event's 0)
    cluster           INTEGER NOT NULL,
    radiant_team_id   BIGINT,
    radiant_team_name TEXT,
    dire_team_id      BIGINT,
    dire_team_name    TEXT,
    radiant_score     INTEGER,
    dire_score        INTEGER,
    source            TEXT NOT NULL,
    source_rank       SMALLINT NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX matches_radiant_team ON matches (radiant_team_id, start_time DESC)
    WHERE radiant_team_id IS NOT NULL;
CREATE INDEX matches_dire_team ON matches (dire_team_id, start_time DESC)
    WHERE dire_team_id IS NOT NULL;

CREATE TABLE player_matches (
    match_id       BIGINT NOT NULL REFERENCES matches (match_id) ON DELETE CASCADE,
    player_slot    INTEGER NOT NULL CHECK (player_slot BETWEEN 0 AND 255),
    account_id     BIGINT,                        -- NULL: anonymous
    hero_id        INTEGER NOT NULL,
    kills          INTEGER NOT NULL CHECK (kills >= 0),
    deaths         INTEGER NOT NULL CHECK (deaths >= 0),
    assists        INTEGER NOT NULL CHECK (assists >= 0),
    last_hits      INTEGER NOT NULL,
    denies         INTEGER NOT NULL,
    gold_per_min   INTEGER NOT NULL,
    xp_per_min     INTEGER NOT NULL,
    level          INTEGER NOT NULL,
    hero_damage    BIGINT,
    tower_damage   BIGINT,
    hero_healing   BIGINT,
    gold           BIGINT,
    gold_spent     BIGINT,
    net_worth      BIGINT,
    leaver_status  INTEGER,
    items          JSONB,                         -- [item id; 6], NULL when unknown
    backpack       JSONB,
    persona_name   TEXT,                          -- name shown in game
    is_radiant     BOOLEAN NOT NULL,
    won            BOOLEAN NOT NULL,
    start_time     BIGINT NOT NULL,               -- the match's, for per-account scans
    source_rank    SMALLINT NOT NULL,
    PRIMARY KEY (match_id, player_slot)
);

CREATE INDEX player_matches_account ON player_matches (account_id, start_time DESC)
    WHERE account_id IS NOT NULL;

CREATE TABLE picks_bans (
    match_id     BIGINT NOT NULL REFERENCES matches (match_id) ON DELETE CASCADE,
    ord          INTEGER NOT NULL,
    is_pick      BOOLEAN NOT NULL,
    hero_id      INTEGER NOT NULL,
    team         INTEGER NOT NULL CHECK (team IN (0, 1)),  -- 0 radiant, 1 dire
    source_rank  SMALLINT NOT NULL,
    PRIMARY KEY (match_id, ord)
);

CREATE TABLE teams (
    team_id          BIGINT PRIMARY KEY,
    name             TEXT,
    last_match_time  BIGINT NOT NULL,             -- newest match seen; its name wins
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE players (
    account_id        BIGINT PRIMARY KEY,
    persona_name      TEXT,
    rank_tier         INTEGER,
    leaderboard_rank  INTEGER,
    country           TEXT,
    last_seen         BIGINT,                     -- unix seconds
    avatar_url        TEXT,
    profile_url       TEXT,
    observed_at_ms    BIGINT NOT NULL,            -- newest profile merged in
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Derived from player_matches, recomputed per account on every write.
CREATE TABLE hero_pool (
    account_id   BIGINT NOT NULL,
    hero_id      INTEGER NOT NULL,
    games        BIGINT NOT NULL,
    wins         BIGINT NOT NULL,
    last_played  BIGINT NOT NULL,                 -- unix seconds
    PRIMARY KEY (account_id, hero_id)
);
