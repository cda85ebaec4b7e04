-- gocache index, schema 1. Append-only: never edit a migration that has
-- shipped; add a new numbered file instead.
--
-- Times are integer Unix seconds, except subdirectory mtimes, which are
-- nanoseconds so that a change within the same second is still seen.

-- Every well-formed entry of the cache (see src/model.rs, Entry).
CREATE TABLE entries (
    subdir     INTEGER NOT NULL,         -- 0..255: the first byte of the ID
    name       TEXT    NOT NULL,         -- '<64 hex>-a' or '<64 hex>-d'
    kind       INTEGER NOT NULL,         -- 0 action, 1 output, 2 exe
    apparent   INTEGER NOT NULL,         -- st_size (exe: the executable's)
    allocated  INTEGER NOT NULL,         -- st_blocks * 512 (exe: dir + file)
    mtime      INTEGER NOT NULL,         -- as seen on disk
    last_use   INTEGER NOT NULL,         -- newest known use, >= mtime
    hits       INTEGER NOT NULL DEFAULT 0,
    first_seen INTEGER NOT NULL,
    output     BLOB,                     -- action: the 32-byte output ID it names
    program    TEXT,                     -- exe: the program's file name
    problem    TEXT,                     -- why the entry is not trusted, if it is not
    PRIMARY KEY (subdir, name)
) WITHOUT ROWID;

-- Things under the cache directory that are not well-formed entries; never
-- touched, only reported. subdir is NULL for the top level, where Go's own
-- files (README, trim.txt, testexpire.txt, fuzz/) are recorded too.
CREATE TABLE others (
    path      TEXT PRIMARY KEY,          -- relative to the cache directory
    subdir    INTEGER,
    class     TEXT    NOT NULL,          -- 'go' (Go's own files), 'gocache', 'odd'
    what      TEXT    NOT NULL,
    apparent  INTEGER NOT NULL,
    allocated INTEGER NOT NULL
);
CREATE INDEX others_subdir ON others (subdir);

-- Per subdirectory, the mtime seen at the last scan, for incremental sync
-- (mtime_ns NULL means "rescan next time": unreadable, or changed too
-- recently to trust the mtime), and the totals of its entries, so that
-- "is the cache over its budget?" costs 256 rows, not a million.
CREATE TABLE subdirs (
    subdir          INTEGER PRIMARY KEY,
    mtime_ns        INTEGER,
    scanned_at      INTEGER NOT NULL,
    build_entries   INTEGER NOT NULL DEFAULT 0,
    build_apparent  INTEGER NOT NULL DEFAULT 0,
    build_allocated INTEGER NOT NULL DEFAULT 0,
    exe_entries     INTEGER NOT NULL DEFAULT 0,
    exe_apparent    INTEGER NOT NULL DEFAULT 0,
    exe_allocated   INTEGER NOT NULL DEFAULT 0,
    dir_allocated   INTEGER NOT NULL DEFAULT 0   -- the subdirectory itself
);

-- Uses recorded (by the wrapper or GOCACHEPROG) for entries the index has
-- not seen yet; folded into entries when a scan finds them.
CREATE TABLE pending_uses (
    subdir   INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    last_use INTEGER NOT NULL,
    hits     INTEGER NOT NULL,
    PRIMARY KEY (subdir, name)
) WITHOUT ROWID;

-- Small facts: last full scan, and so on.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
