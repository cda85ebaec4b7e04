-- One row per go command served by `gocache prog` (GOCACHEPROG), so stats
-- can show the hit rate of each.
CREATE TABLE prog_sessions (
    id        INTEGER PRIMARY KEY,
    started   INTEGER NOT NULL,   -- Unix seconds
    ended     INTEGER NOT NULL,
    gets      INTEGER NOT NULL,
    hits      INTEGER NOT NULL,
    misses    INTEGER NOT NULL,
    puts      INTEGER NOT NULL,
    put_bytes INTEGER NOT NULL,
    errors    INTEGER NOT NULL
);
