-- What the remote tier did in each `gocache prog --remote` session
-- (remote = 1); sessions without one keep remote = 0 and zeros.
ALTER TABLE prog_sessions ADD COLUMN remote INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prog_sessions ADD COLUMN remote_hits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prog_sessions ADD COLUMN remote_misses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prog_sessions ADD COLUMN remote_refused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prog_sessions ADD COLUMN remote_errors INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prog_sessions ADD COLUMN remote_uploaded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prog_sessions ADD COLUMN remote_dropped INTEGER NOT NULL DEFAULT 0;
