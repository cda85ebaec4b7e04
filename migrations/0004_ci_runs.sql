-- gocache index, schema 4: CI runs (`gocache ci begin` and `gocache ci end`).
-- Append-only, like the others: never edit this file once it has shipped.

-- One row per CI run, numbered in order. The index travels with the cache,
-- so these are the runs of this cache's lineage (each run restored what the
-- one before it saved).
CREATE TABLE ci_runs (
    id                 INTEGER PRIMARY KEY,  -- the run's ordinal: 1, 2, 3, ...
    label              TEXT,                 -- `ci begin --label`: workflow, job, branch
    started            INTEGER NOT NULL,     -- when `ci begin` ran (Unix seconds)
    used_after         INTEGER NOT NULL,     -- after `ci begin`, no entry's mtime was newer:
                                             -- one that is newer was used or made by the run
    ended              INTEGER,              -- when `ci end` ran; NULL while the run is on,
                                             -- or when it never ended (abandoned)
    restored_entries   INTEGER NOT NULL,     -- what the cache held at `ci begin`
    restored_apparent  INTEGER NOT NULL,
    restored_allocated INTEGER NOT NULL,
    report             TEXT                  -- `ci end`'s figures, as JSON
);

-- The last CI run that used or made the entry (ci_runs.id); NULL when no
-- recorded run did. Syncs leave it alone, so it survives an entry's updates.
ALTER TABLE entries ADD COLUMN last_run INTEGER;
