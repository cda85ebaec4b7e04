-- gocache index, schema 5: a trace of what go did with the cache, for
-- `gocache trace export` and `gocache simulate` (issue 16). Append-only,
-- like the others: never edit this file once it has shipped.
--
-- Bounded: the writer deletes the oldest rows in the same transaction as it
-- adds new ones, so the table keeps at most the newest N events
-- (GOCACHE_TRACE, default 1,000,000; see src/index/trace.rs).

CREATE TABLE trace (
    seq    INTEGER PRIMARY KEY,  -- order of recording; rows are only added at
                                 -- the top and deleted at the bottom
    t      INTEGER NOT NULL,     -- when, in Unix milliseconds
    ev     INTEGER NOT NULL,     -- 0 new (entry first seen), 1 use (a hit),
                                 -- 2 miss (a get that missed), 3 put
    kind   INTEGER NOT NULL,     -- of the entry: 0 action, 1 output, 2 exe
    entry  INTEGER NOT NULL,     -- the entry's ID, its first 64 bits (signed)
    output INTEGER,              -- an action's output ID, its first 64 bits
    size   INTEGER,              -- allocated bytes of the entry (a put: of the output)
    cost   REAL,                 -- rebuild seconds, when measured
    source INTEGER NOT NULL,     -- 0 hook (and the wrapper), 1 ci, 2 prog
    module INTEGER               -- modules.id credited, if any
);
