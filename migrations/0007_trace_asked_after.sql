-- gocache index, schema 7: which lookups go makes only after a hit, for
-- `gocache simulate` (issue 24). Append-only, like the others: never edit
-- this file once it has shipped.
--
-- After a hit of an action, go asks for the compiler's (or linker's)
-- output kept beside it, Subkey(action, "stdout") or "link-stdout"; after a
-- miss it rebuilds instead and never asks. `gocache prog` recognises those
-- lookups (it computes both subkeys of every hit) and records the action
-- they follow, so that the simulator does not count them where its replay
-- missed that action.

ALTER TABLE trace ADD COLUMN asked_after INTEGER;  -- a get: the action, its first
                                                   -- 64 bits (signed), whose hit go
                                                   -- was showing when it asked
