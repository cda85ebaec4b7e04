//! Summaries of the go commands `gocache prog` served.

use super::{Index, SqlResult};
use crate::error::Result;
use crate::model::ProgSession;

impl Index {
    /// Records one session's summary.
    pub fn record_session(&mut self, s: &ProgSession) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO prog_sessions (started, ended, gets, hits, misses, puts, put_bytes, errors)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    s.started,
                    s.ended,
                    s.gets as i64,
                    s.hits as i64,
                    s.misses as i64,
                    s.puts as i64,
                    s.put_bytes as i64,
                    s.errors as i64
                ],
            )
            .map(drop)
            .at(&self.path)
    }

    /// The most recent `limit` sessions, newest first.
    pub fn sessions(&self, limit: usize) -> Result<Vec<ProgSession>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT started, ended, gets, hits, misses, puts, put_bytes, errors
                 FROM prog_sessions ORDER BY id DESC LIMIT ?1",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                let u = |i| r.get::<_, i64>(i).map(|v| v as u64);
                Ok(ProgSession {
                    started: r.get(0)?,
                    ended: r.get(1)?,
                    gets: u(2)?,
                    hits: u(3)?,
                    misses: u(4)?,
                    puts: u(5)?,
                    put_bytes: u(6)?,
                    errors: u(7)?,
                })
            })
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_come_back_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let s = |started| ProgSession {
            started,
            ended: started + 5,
            gets: 10,
            hits: 7,
            misses: 3,
            puts: 3,
            put_bytes: 1 << 20,
            errors: 0,
        };
        for t in [100, 200, 300] {
            ix.record_session(&s(t)).unwrap();
        }
        assert_eq!(ix.sessions(2).unwrap(), vec![s(300), s(200)]);
    }
}
