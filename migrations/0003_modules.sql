-- gocache index, schema 3: which Go module (project) each entry was added
-- or last used by, as the wrapper (`gocache go`) and `gocache prog` saw it,
-- so that stats can say which projects hold the bytes.

CREATE TABLE modules (
    id         INTEGER PRIMARY KEY,
    root       TEXT    NOT NULL UNIQUE,  -- the directory holding its go.mod
    path       TEXT,                     -- its module path, when go.mod said
    first_seen INTEGER NOT NULL,         -- Unix seconds
    last_seen  INTEGER NOT NULL          -- the last go command credited to it
);

-- modules.id of the module a go command ran in when it added or last used
-- the entry; NULL when no wrapped go command or prog session did.
ALTER TABLE entries ADD COLUMN module INTEGER;
-- The same for a use recorded before a scan found the entry.
ALTER TABLE pending_uses ADD COLUMN module INTEGER;
