//! Summaries of the go commands `gocache prog` served.

use super::{Index, SqlResult};
use crate::error::Result;
use crate::model::{ProgRemote, ProgSession};

/// The summaries of `gocache prog` sessions: [`Index::sessions`] to
/// read, [`Index::sessions_mut`] to write. A handle borrows the index; it holds no state of its own.
pub struct Sessions<I>(I);

impl Index {
    /// The summaries of `gocache prog` sessions, to read.
    pub fn sessions(&self) -> Sessions<&Index> {
        Sessions(self)
    }

    /// The summaries of `gocache prog` sessions, to read and write.
    pub fn sessions_mut(&mut self) -> Sessions<&mut Index> {
        Sessions(self)
    }
}

impl<I: std::ops::Deref<Target = Index>> Sessions<I> {
    /// The most recent `limit` sessions, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<ProgSession>> {
        let mut stmt = self
            .0
            .conn
            .prepare(
                "SELECT started, ended, gets, hits, misses, puts, put_bytes, errors,
                     remote, remote_hits, remote_misses, remote_refused, remote_errors,
                     remote_uploaded, remote_dropped
                 FROM prog_sessions ORDER BY id DESC LIMIT ?1",
            )
            .at(&self.0.path)?;
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
                    remote: r
                        .get::<_, bool>(8)?
                        .then(|| {
                            Ok::<_, rusqlite::Error>(ProgRemote {
                                hits: u(9)?,
                                misses: u(10)?,
                                refused: u(11)?,
                                errors: u(12)?,
                                uploaded: u(13)?,
                                dropped: u(14)?,
                            })
                        })
                        .transpose()?,
                })
            })
            .at(&self.0.path)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.0.path)
    }
}

impl<I: std::ops::DerefMut<Target = Index>> Sessions<I> {
    /// Records one session's summary.
    pub fn record(&mut self, s: &ProgSession) -> Result<()> {
        let r = s.remote.unwrap_or_default();
        self.0.conn
            .execute(
                "INSERT INTO prog_sessions (started, ended, gets, hits, misses, puts, put_bytes, errors,
                     remote, remote_hits, remote_misses, remote_refused, remote_errors,
                     remote_uploaded, remote_dropped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                rusqlite::params![
                    s.started,
                    s.ended,
                    s.gets as i64,
                    s.hits as i64,
                    s.misses as i64,
                    s.puts as i64,
                    s.put_bytes as i64,
                    s.errors as i64,
                    s.remote.is_some(),
                    r.hits as i64,
                    r.misses as i64,
                    r.refused as i64,
                    r.errors as i64,
                    r.uploaded as i64,
                    r.dropped as i64,
                ],
            )
            .map(drop)
            .at(&self.0.path)
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
            remote: (started == 200).then_some(ProgRemote {
                hits: 4,
                misses: 2,
                refused: 1,
                errors: 0,
                uploaded: 3,
                dropped: 1,
            }),
        };
        for t in [100, 200, 300] {
            ix.sessions_mut().record(&s(t)).unwrap();
        }
        assert_eq!(ix.sessions().recent(2).unwrap(), vec![s(300), s(200)]);
    }
}
