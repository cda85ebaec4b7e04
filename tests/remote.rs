//! The remote tier against a real, distributed S3 store: a three-node
//! Garage cluster on 127.0.0.1 (see `support::garage`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gocache::layout::{ActionEntry, Id};
use gocache::remote::keys::{self, RemoteKey};
use gocache::remote::policy::{ObjectKey, RemoteLimits, RemoteRule};
use gocache::remote::s3::{S3Config, S3Overrides, S3Store, Timeouts};
use gocache::remote::store::{ObjectStore, PutBody, StoreError, get_bytes, list_all};
use gocache::remote::tier::{
    FetchError, RemoteTier, UploadBody, UploadJob, Uploader, UploaderOptions, UseRecorder,
};
use gocache::remote::uses::Uses;
use gocache::remote::{RemoteTrimOptions, RemoteUrl, remote_stats, remote_trim};
use gocache::report::Silent;
use sha2::Digest;

use crate::support::garage::{GarageCluster, Key};
use crate::support::{gocache_bin, json, run_expecting, run_ok};

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn real_clock() -> gocache::remote::tier::Clock {
    Arc::new(real_now)
}

/// A made-up cache entry: random bytes and the action entry naming them.
fn entry(len: usize) -> (ActionEntry, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
    let output = Id(sha2::Sha256::digest(&body).into());
    let mut action = [0u8; 32];
    fastrand::fill(&mut action);
    let e = ActionEntry {
        action: Id(action),
        output,
        size: len as u64,
        time_nanos: 1_767_323_045_000_000_000,
    };
    (e, body)
}

/// Uploads an entry the way the uploader does: output, then action entry.
fn put_entry(store: &dyn ObjectStore, e: &ActionEntry, body: &[u8]) {
    store
        .put(&keys::output_key(e.output), PutBody::Bytes(body))
        .unwrap();
    store
        .put(
            &keys::action_key(e.action),
            PutBody::Bytes(e.format().as_bytes()),
        )
        .unwrap();
}

fn exists(store: &dyn ObjectStore, key: &str) -> bool {
    store.head(key).unwrap().is_some()
}

#[test]
fn store_round_trips_through_a_three_node_cluster() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let store = store.with_page_size(2);

    store.put("x/one", PutBody::Bytes(b"1")).unwrap();
    store.put("x/empty", PutBody::Bytes(b"")).unwrap();
    let mut tmp = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut tmp, b"from a file, not all of it").unwrap();
    store
        .put(
            "x/file",
            PutBody::File {
                file: &tmp,
                len: 11,
            },
        )
        .unwrap();
    // A file shorter than the length given: a local error, not the
    // network's, and nothing is stored.
    let err = store
        .put(
            "x/short",
            PutBody::File {
                file: &tmp,
                len: 1000,
            },
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Local { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the file ended at 26 of 1000 bytes"),
        "{err}"
    );
    for i in 0..3 {
        store
            .put(&format!("y/{i}"), PutBody::Bytes(&[i; 100]))
            .unwrap();
    }

    assert_eq!(
        get_bytes(&store, "x/file", 100).unwrap().unwrap(),
        b"from a file"
    );
    assert_eq!(get_bytes(&store, "x/empty", 0).unwrap().unwrap(), b"");
    assert_eq!(get_bytes(&store, "x/missing", 100).unwrap(), None);
    let err = get_bytes(&store, "y/1", 99).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 100,
                limit: 99,
                ..
            }
        ),
        "{err}"
    );

    let meta = store.head("y/2").unwrap().unwrap();
    assert_eq!(meta.size, 100);
    assert!((meta.last_modified - real_now()).abs() < 120, "{meta:?}");
    assert_eq!(store.head("y/9").unwrap(), None);

    // Pages of two, in key order, keys relative to the prefix.
    let all = list_all(&store, "").unwrap();
    let names: Vec<&str> = all.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(names, ["x/empty", "x/file", "x/one", "y/0", "y/1", "y/2"]);
    assert_eq!(list_all(&store, "y/").unwrap().len(), 3);
    // Another prefix of the same bucket sees nothing of this one.
    let other = g.store_on(1, g.fresh_url(), &g.rw);
    assert!(list_all(&other, "").unwrap().is_empty());
    // The same prefix through another node sees everything.
    let again = g.store_on(2, url, &g.rw);
    assert_eq!(list_all(&again, "").unwrap().len(), 6);

    let keys: Vec<String> = ["x/one", "x/file", "x/never-was"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = store.delete_many(&keys).unwrap();
    assert_eq!((r.deleted, r.failed.len()), (3, 0));
    assert_eq!(list_all(&store, "x/").unwrap().len(), 1);
    assert!(
        store.describe().contains("s3://gocache-test/t-"),
        "{}",
        store.describe()
    );
}

#[test]
fn read_only_and_wrong_credentials_get_clear_errors() {
    let g = GarageCluster::shared();
    let (url, rw) = g.fresh_prefix(&g.rw);
    rw.put("k", PutBody::Bytes(b"v")).unwrap();

    let ro = g.store_on(0, url.clone(), &g.ro);
    assert_eq!(get_bytes(&ro, "k", 10).unwrap().unwrap(), b"v");
    assert_eq!(list_all(&ro, "").unwrap().len(), 1);
    let err = ro.put("k2", PutBody::Bytes(b"v")).unwrap_err();
    assert!(err.is_denied(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("PUT k2 was refused"), "{msg}");
    assert!(msg.contains("may not write here"), "{msg}");
    assert!(
        msg.contains("gocache prog --remote URL --remote-read-only"),
        "{msg}"
    );
    let err = ro.delete_many(&["k".to_owned()]).unwrap_err();
    assert!(err.is_denied(), "{err:?}");
    assert!(exists(&rw, "k"));

    // Read-only mode: a tier without a recorder fetches and writes nothing.
    let (e, body) = entry(100);
    put_entry(&rw, &e, &body);
    let before = list_all(&rw, "").unwrap();
    let tier = RemoteTier::new(Arc::new(g.store_on(1, url.clone(), &g.ro)), None);
    let mut sink = Vec::new();
    assert_eq!(
        tier.fetch(e.action, &mut sink, real_now()).unwrap(),
        Some(e)
    );
    assert_eq!(sink, body);
    assert_eq!(list_all(&rw, "").unwrap(), before);

    let wrong = Key {
        id: g.rw.id.clone(),
        secret: "0".repeat(64),
    };
    let bad = g.store_on(0, url.clone(), &wrong);
    let err = get_bytes(&bad, "k", 10).unwrap_err();
    assert!(err.is_denied(), "{err:?}");
    assert!(err.to_string().contains("check the credentials"), "{err}");
    let unknown = Key {
        id: "GK000000000000000000000000".into(),
        secret: "0".repeat(64),
    };
    let err = list_all(&g.store_on(0, url.clone(), &unknown), "").unwrap_err();
    assert!(err.is_denied(), "{err:?}");
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");

    let nobucket = g.store_on(
        0,
        RemoteUrl::parse("s3://no-such-bucket-here/x").unwrap(),
        &g.rw,
    );
    let err = get_bytes(&nobucket, "k", 10).unwrap_err();
    assert!(
        err.to_string().contains("bucket does not exist") || err.is_denied(),
        "{err}"
    );
}

#[test]
fn a_store_that_is_down_or_silent_fails_within_its_timeouts() {
    let url = RemoteUrl::parse("s3://bucket/x").unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_millis(500),
        request: Duration::from_secs(1),
        min_rate_bytes_per_s: 1 << 20,
        retries: 1,
        ..Timeouts::default()
    };
    // Nothing listens: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    // Accepts, never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for (port, what) in [(port, "down"), (silent_port, "silent")] {
        let o = S3Overrides {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: Some("garage".into()),
            timeouts: Some(timeouts),
            ..S3Overrides::default()
        };
        let store = S3Store::new(S3Config::resolve(url.clone(), &o, |_| None).unwrap());
        let t = Instant::now();
        let err = get_bytes(&store, "k", 10).unwrap_err();
        assert!(err.is_unavailable(), "{what}: {err:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            t.elapsed()
        );
        assert!(
            err.to_string().contains("times out after 1 s"),
            "{what}: {err}"
        );
        // The cause is said once, in the message: a chain printed with
        // `{:#}` (anyhow) must not repeat it.
        let msg = err.to_string();
        assert_eq!(format!("{:#}", anyhow::Error::new(err)), msg, "{what}");
    }
    drop(silent);
}

#[test]
fn a_node_killed_midway_still_serves() {
    let g = GarageCluster::start();
    let url = RemoteUrl::parse(&format!("s3://{}/kill", g.bucket)).unwrap();
    let via = |i| g.store_on(i, url.clone(), &g.rw);
    let mut entries = Vec::new();
    for _ in 0..5 {
        let (e, body) = entry(3000);
        put_entry(&via(0), &e, &body);
        entries.push((e, body));
    }
    // Node 1 dies: two of three still make a quorum, through either
    // surviving node.
    g.kill(1);
    for i in [0, 2] {
        let (e, body) = entry(3000);
        put_entry(&via(i), &e, &body);
        entries.push((e, body));
    }
    for (e, body) in &entries {
        for i in [0, 2] {
            let got = get_bytes(&via(i), &keys::output_key(e.output), 1 << 20).unwrap();
            assert_eq!(got.as_deref(), Some(&body[..]), "{}", g.logs());
        }
    }
    assert_eq!(list_all(&via(2), "o/").unwrap().len(), 7);

    // It comes back and another goes: what was written while it was down
    // is still read through it (quorum reads).
    g.restart(1);
    g.kill(2);
    let back = via(1);
    for (e, body) in &entries {
        let got = get_bytes(&back, &keys::output_key(e.output), 1 << 20).unwrap();
        assert_eq!(got.as_deref(), Some(&body[..]));
    }
    let (e, body) = entry(10);
    put_entry(&back, &e, &body);

    // Two down: no quorum; a clear error within the request's time limit
    // (Garage may fail at once or wait on its peers), never a hang.
    g.kill(0);
    let o = S3Overrides {
        endpoint: Some(g.endpoint_of(1)),
        region: Some(crate::support::garage::REGION.into()),
        credentials: Some(g.rw.credentials()),
        timeouts: Some(Timeouts {
            request: Duration::from_secs(3),
            ..Timeouts::default()
        }),
        ..S3Overrides::default()
    };
    let impatient = S3Store::new(S3Config::resolve(url.clone(), &o, |_| None).unwrap());
    let t = Instant::now();
    let err = get_bytes(&impatient, &keys::output_key(e.output), 100).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[test]
fn fetch_serves_verified_outputs_and_refuses_corrupt_ones() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let rec = Arc::new(UseRecorder::new(real_now()));
    let tier = RemoteTier::new(Arc::clone(&store), Some(Arc::clone(&rec)));
    let now = real_now();

    let (good, body) = entry(5000);
    put_entry(&*store, &good, &body);
    let mut sink = Vec::new();
    let got = tier.fetch(good.action, &mut sink, now).unwrap().unwrap();
    assert_eq!(got, good);
    assert_eq!(sink, body);

    // A miss, and an action entry whose output is gone: misses too.
    assert_eq!(tier.fetch(Id([7; 32]), &mut Vec::new(), now).unwrap(), None);
    let (orphan, _) = entry(10);
    store
        .put(
            &keys::action_key(orphan.action),
            PutBody::Bytes(orphan.format().as_bytes()),
        )
        .unwrap();
    assert_eq!(
        tier.fetch(orphan.action, &mut Vec::new(), now).unwrap(),
        None
    );

    // Bytes that are not the output's: refused, naming the object.
    let (bad, body) = entry(100);
    let mut evil = body.clone();
    evil[0] ^= 1;
    put_entry(&*store, &bad, &evil);
    let err = tier.fetch(bad.action, &mut Vec::new(), now).unwrap_err();
    assert!(matches!(err, FetchError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&keys::output_key(bad.output)), "{msg}");
    assert!(msg.contains("not its name"), "{msg}");
    // Longer than its action entry says: refused before it is all read.
    let (long, body) = entry(100);
    put_entry(&*store, &long, &body);
    store
        .put(&keys::output_key(long.output), PutBody::Bytes(&[0; 5000]))
        .unwrap();
    let err = tier.fetch(long.action, &mut Vec::new(), now).unwrap_err();
    assert!(
        err.to_string().contains("but its action entry says 100"),
        "{err}"
    );
    // An action object that is not Go's format, or names another action.
    store
        .put(
            &keys::action_key(Id([8; 32])),
            PutBody::Bytes(b"v1 nonsense"),
        )
        .unwrap();
    let err = tier.fetch(Id([8; 32]), &mut Vec::new(), now).unwrap_err();
    assert!(matches!(err, FetchError::BadAction { .. }), "{err:?}");
    store
        .put(
            &keys::action_key(Id([9; 32])),
            PutBody::Bytes(good.format().as_bytes()),
        )
        .unwrap();
    let err = tier.fetch(Id([9; 32]), &mut Vec::new(), now).unwrap_err();
    assert!(err.to_string().contains("names action"), "{err}");

    let c = rec.counts();
    assert_eq!((c.lookups, c.hits, c.refused), (7, 1, 4), "{c:?}");
    assert_eq!(c.download_bytes, 5000);
}

#[test]
fn a_down_store_pauses_the_tier_instead_of_timing_out_per_entry() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let o = S3Overrides {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("garage".into()),
        ..S3Overrides::default()
    };
    let url = RemoteUrl::parse("s3://bucket/x").unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(S3Store::new(S3Config::resolve(url, &o, |_| None).unwrap()));
    let tier = RemoteTier::new(Arc::clone(&store), None);
    let now = 1_000;
    let err = tier.fetch(Id([1; 32]), &mut Vec::new(), now).unwrap_err();
    assert!(
        matches!(&err, FetchError::Store(e) if e.is_unavailable()),
        "{err:?}"
    );
    let err = tier
        .fetch(Id([2; 32]), &mut Vec::new(), now + 1)
        .unwrap_err();
    assert!(matches!(err, FetchError::Paused(1030)), "{err:?}");
    let err = tier
        .fetch(Id([2; 32]), &mut Vec::new(), now + 30)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Store(_)),
        "asks again after the pause: {err:?}"
    );

    // Uploads: never block the caller, give up by the deadline.
    let rec = Arc::new(UseRecorder::new(now));
    let up = Uploader::start(
        store,
        Arc::clone(&rec),
        UploaderOptions::default(),
        Arc::new(move || now),
    );
    for _ in 0..20 {
        let (e, body) = entry(10);
        assert!(up.try_enqueue(UploadJob {
            entry: e,
            body: UploadBody::Bytes(body)
        }));
    }
    let t = Instant::now();
    let c = up.drain(Instant::now() + Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(c.uploaded, 0);
    assert_eq!(c.failed + c.abandoned, 20, "{c:?}");
    assert!(c.first_error.unwrap().contains("is the store up"));
    assert!(c.log_lost);

    // The uses wait for a store that answers.
    let (e, _) = entry(10);
    rec.record_use(e.action, e.output, now);
    assert!(rec.flush(&*tier.store().clone(), now).is_err());
    assert!(rec.has_pending());
    let g = GarageCluster::shared();
    let (_, up) = g.fresh_prefix(&g.rw);
    let key = rec.flush(&up, now + 60).unwrap().unwrap();
    let log = Uses::decode(&get_bytes(&up, &key, 1 << 20).unwrap().unwrap()).unwrap();
    assert_eq!(log.actions[&e.action].output, e.output);
    assert_eq!(log.sessions[&rec.session()].errors, c.failed);
    assert!(!rec.has_pending());
}

#[test]
fn uploads_drain_within_the_deadline_and_log_their_uses() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let now = real_now();
    let rec = Arc::new(UseRecorder::new(now));
    let opts = UploaderOptions {
        workers: 2,
        max_jobs: 8,
        max_bytes: 1 << 20,
        ..UploaderOptions::default()
    };
    let up = Uploader::start(Arc::clone(&store), Arc::clone(&rec), opts, real_clock());
    let mut sent = Vec::new();
    let mut dropped = 0;
    for i in 0..40 {
        let (e, body) = entry(2000);
        let body = if i % 2 == 0 {
            UploadBody::Bytes(body)
        } else {
            let mut f = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut f, &body).unwrap();
            UploadBody::File(f)
        };
        if up.try_enqueue(UploadJob { entry: e, body }) {
            sent.push(e);
        } else {
            dropped += 1;
        }
    }
    // A too-big body is refused by the byte bound, not queued.
    let (big, body) = entry(2 << 20);
    assert!(!up.try_enqueue(UploadJob {
        entry: big,
        body: UploadBody::Bytes(body)
    }));
    let c = up.drain(Instant::now() + Duration::from_secs(60));
    assert_eq!(c.uploaded as usize, sent.len(), "{c:?}");
    assert_eq!(c.dropped, dropped + 1);
    assert_eq!((c.failed, c.abandoned, c.log_lost), (0, 0, false), "{c:?}");
    assert_eq!(c.logs_written, 1, "{c:?}");

    let tier = RemoteTier::new(Arc::clone(&store), None);
    for e in &sent {
        let mut sink = Vec::new();
        assert_eq!(tier.fetch(e.action, &mut sink, now).unwrap(), Some(*e));
    }
    // The log names every upload, and the session's counters.
    let logs = list_all(&*store, keys::USES).unwrap();
    assert_eq!(logs.len(), 1);
    let uses = Uses::decode(&get_bytes(&*store, &logs[0].key, 1 << 20).unwrap().unwrap()).unwrap();
    for e in &sent {
        assert_eq!(uses.actions[&e.action].output, e.output);
    }
    let counts = uses.sessions[&rec.session()];
    assert_eq!(counts.uploads as usize, sent.len());
}

/// Uploads `n` entries of `size` bytes and returns them.
pub(crate) fn seed(store: &dyn ObjectStore, n: usize, size: usize) -> Vec<ActionEntry> {
    (0..n)
        .map(|_| {
            let (e, body) = entry(size);
            put_entry(store, &e, &body);
            e
        })
        .collect()
}

/// Writes a use log saying `entries` were used at `at`, as a session would.
pub(crate) fn log_uses(store: &dyn ObjectStore, entries: &[ActionEntry], at: i64) {
    let rec = UseRecorder::new(at);
    for e in entries {
        rec.record_use(e.action, e.output, at);
    }
    rec.flush(store, at).unwrap().unwrap();
}

#[test]
fn trim_evicts_by_fleet_wide_last_use_and_merges_the_logs() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let entries = seed(&store, 6, 10_000);
    // Everything was uploaded now; the trim looks from ten days on, so
    // only logged uses tell the entries apart.
    let now = real_now() + 10 * 86_400;
    let day = 86_400;
    // Two machines' logs: entries 0-1 used 9 days ago, 2-3 a day ago by
    // one and 4-5 two days ago by another; entry 0 again yesterday.
    log_uses(&store, &entries[0..2], now - 9 * day);
    log_uses(&store, &entries[2..4], now - day);
    log_uses(&store, &entries[4..6], now - 2 * day);
    log_uses(&store, &entries[0..1], now - day);

    let limits = RemoteLimits {
        budget: Some(35_000),
        grace: 3600,
    };
    let dry = remote_trim(
        &store,
        &RemoteTrimOptions {
            limits,
            dry_run: true,
        },
        now,
        &Silent,
    )
    .unwrap();
    assert_eq!(dry.snapshot, None);
    assert_eq!(
        list_all(&store, keys::USES).unwrap().len(),
        4,
        "a dry run writes nothing"
    );

    let r = remote_trim(
        &store,
        &RemoteTrimOptions {
            limits,
            dry_run: false,
        },
        now,
        &Silent,
    )
    .unwrap();
    assert_eq!(r.plan.victims, dry.plan.victims);
    // 12 objects, 61,050 bytes plus the logs, for 35,000: entry 1 (9
    // days) goes first, then 4 and 5 (2 days).
    let gone: Vec<ObjectKey> = r.plan.victims.iter().map(|v| v.key).collect();
    let expect_gone = [1usize, 4, 5];
    for (i, e) in entries.iter().enumerate() {
        let kept = exists(&store, &keys::output_key(e.output));
        assert_eq!(kept, !expect_gone.contains(&i), "entry {i}: {gone:?}");
        assert_eq!(kept, exists(&store, &keys::action_key(e.action)));
    }
    // Action entries are deleted before their outputs.
    let pos = |k| gone.iter().position(|g| *g == k).unwrap();
    assert!(pos(ObjectKey::Action(entries[1].action)) < pos(ObjectKey::Output(entries[1].output)));
    assert!(r.plan.victims.iter().all(|v| v.rule == RemoteRule::Budget));
    assert_eq!(r.deleted, 6);
    assert_eq!(r.deleted_bytes, 3 * (10_000 + 175));
    assert_eq!(
        (r.logs_merged, r.snapshots_merged, r.uses_deleted),
        (4, 0, 4)
    );
    assert_eq!(r.actions_read, 0, "every action entry was in a log");
    assert!(r.plan.unmet.is_none());
    // One snapshot replaces the four logs, and holds the survivors' uses.
    let left = list_all(&store, keys::USES).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(Some(&left[0].key), r.snapshot.as_ref());
    let snap = Uses::decode(&get_bytes(&store, &left[0].key, 1 << 20).unwrap().unwrap()).unwrap();
    assert_eq!(snap.actions[&entries[0].action].last_use, now - day);
    assert!(
        !snap.actions.contains_key(&entries[1].action),
        "victims leave the snapshot"
    );
    assert_eq!(snap.sessions.len(), 4);

    // Within budget now: a second trim deletes nothing and keeps the uses.
    let r2 = remote_trim(
        &store,
        &RemoteTrimOptions {
            limits,
            dry_run: false,
        },
        now,
        &Silent,
    )
    .unwrap();
    assert!(r2.plan.victims.is_empty());
    assert_eq!(r2.snapshots_merged, 1);
    let s = remote_stats(&store, now).unwrap();
    assert_eq!(s.total.objects, 6);
    assert_eq!(s.snapshots.objects, 1);
    assert_eq!(s.logs.objects, 0);
}

#[test]
fn trim_learns_what_unlogged_action_entries_name_and_collects_garbage() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let entries = seed(&store, 3, 100);
    // An action entry whose output is gone, an output nothing names, an
    // object that is not Go's format, and a key that is not ours.
    let (orphan, _) = entry(10);
    store
        .put(
            &keys::action_key(orphan.action),
            PutBody::Bytes(orphan.format().as_bytes()),
        )
        .unwrap();
    let (_, lone_body) = entry(50);
    let lone = Id(sha2::Sha256::digest(&lone_body).into());
    store
        .put(&keys::output_key(lone), PutBody::Bytes(&lone_body))
        .unwrap();
    store
        .put(&keys::action_key(Id([3; 32])), PutBody::Bytes(b"junk"))
        .unwrap();
    store
        .put("notes.txt", PutBody::Bytes(b"someone else's"))
        .unwrap();

    let now = real_now() + 86_400;
    let opts = RemoteTrimOptions {
        limits: RemoteLimits {
            budget: None,
            grace: 3600,
        },
        dry_run: false,
    };
    let r = remote_trim(&store, &opts, now, &Silent).unwrap();
    assert_eq!(r.actions_read, 5);
    let mut gone: Vec<ObjectKey> = r.plan.victims.iter().map(|v| v.key).collect();
    gone.sort();
    let mut want = vec![
        ObjectKey::Action(orphan.action),
        ObjectKey::Action(Id([3; 32])),
        ObjectKey::Output(lone),
    ];
    want.sort();
    assert_eq!(gone, want);
    assert!(r.plan.victims.iter().all(|v| v.rule == RemoteRule::Garbage));
    assert!(exists(&store, "notes.txt"), "other keys are never touched");
    for e in &entries {
        assert!(exists(&store, &keys::output_key(e.output)));
    }
    // The snapshot remembers what each action entry names.
    let r2 = remote_trim(&store, &opts, now, &Silent).unwrap();
    assert_eq!(r2.actions_read, 0);
    assert!(r2.plan.victims.is_empty());
}

#[test]
fn trim_with_read_only_credentials_fails_clearly_and_changes_nothing() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let entries = seed(&store, 2, 1000);
    log_uses(&store, &entries, real_now());
    let ro = g.store_on(0, url, &g.ro);
    let opts = RemoteTrimOptions {
        limits: RemoteLimits {
            budget: Some(0),
            grace: 3600,
        },
        dry_run: false,
    };
    let err = remote_trim(&ro, &opts, real_now() + 86_400, &Silent).unwrap_err();
    assert!(err.is_denied(), "{err:?}");
    assert!(err.to_string().contains("may not write"), "{err}");
    assert_eq!(list_all(&store, "").unwrap().len(), 5);
    // A dry run only reads: fine with read-only credentials.
    let dry = remote_trim(
        &ro,
        &RemoteTrimOptions {
            dry_run: true,
            ..opts
        },
        real_now() + 86_400,
        &Silent,
    )
    .unwrap();
    assert_eq!(dry.plan.victims.len(), 4);
}

#[test]
fn stats_report_the_bucket_and_the_fleets_hit_share() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let now = real_now();
    let entries = seed(&*store, 4, 1000);
    // Two sessions: one hits three entries and misses one, the other hits
    // one and misses one.
    for (hits, misses) in [(3usize, 1usize), (1, 1)] {
        let rec = Arc::new(UseRecorder::new(now));
        let tier = RemoteTier::new(Arc::clone(&store), Some(Arc::clone(&rec)));
        for e in &entries[..hits] {
            assert!(
                tier.fetch(e.action, &mut Vec::new(), now)
                    .unwrap()
                    .is_some()
            );
        }
        for _ in 0..misses {
            assert!(
                tier.fetch(Id([0xee; 32]), &mut Vec::new(), now)
                    .unwrap()
                    .is_none()
            );
        }
        rec.flush(&*store, now).unwrap();
    }
    store.put("other/x", PutBody::Bytes(b"12345")).unwrap();
    let s = remote_stats(&*store, now + 2 * 3600).unwrap();
    assert_eq!((s.actions.objects, s.outputs.objects), (4, 4));
    assert_eq!(s.outputs.bytes, 4000);
    assert_eq!(s.actions.bytes, 4 * 175);
    assert_eq!(s.total.objects, 8);
    assert_eq!((s.logs.objects, s.other.objects, s.other.bytes), (2, 1, 5));
    assert_eq!(s.prefix_bytes, 4700 + s.logs.bytes + 5);
    assert_eq!(s.sessions, 2);
    assert_eq!((s.counts.lookups, s.counts.hits), (6, 4));
    assert_eq!(s.hit_share, Some(4.0 / 6.0));
    let by_age: Vec<(&str, u64)> = s.age.iter().map(|a| (a.bucket, a.totals.objects)).collect();
    assert_eq!(
        by_age,
        [
            ("<1h", 0),
            ("<1d", 8),
            ("<5d", 0),
            ("<30d", 0),
            (">=30d", 0)
        ]
    );
    assert!(s.oldest_upload.is_some() && s.oldest_upload <= s.newest_upload);
    serde_json::to_string(&s).unwrap();
}

/// The hardest case: a trim, and another trim, while two writers upload
/// entries and log uses. Nothing a trim should keep is lost: no use ever
/// logged, no session's counters, and no object whose use or upload was
/// inside the grace period as the trim saw it.
#[test]
fn trims_beside_two_writers_lose_nothing_they_should_keep() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let old = seed(&store, 10, 20_000);
    // Old enough to be outside a 2 s grace period (LastModified is whole
    // seconds).
    std::thread::sleep(Duration::from_millis(3100));
    let grace = 2;
    let budget = 150_000;

    let stop = AtomicBool::new(false);
    // (entry, time of the use, when its log was written)
    let logged: std::sync::Mutex<Vec<(ActionEntry, i64, Instant)>> = Default::default();
    let sessions: std::sync::Mutex<
        Vec<(
            gocache::remote::uses::SessionId,
            gocache::remote::uses::SessionCounts,
        )>,
    > = Default::default();
    // (when the trim started, its now, its victims)
    let trims: std::sync::Mutex<Vec<(Instant, i64, Vec<ObjectKey>)>> = Default::default();
    std::thread::scope(|s| {
        for w in 0..2 {
            let (stop, logged, sessions, url) = (&stop, &logged, &sessions, url.clone());
            s.spawn(move || {
                let store: Arc<dyn ObjectStore> = Arc::new(g.store_on(w, url, &g.rw));
                let rec = Arc::new(UseRecorder::new(real_now()));
                let tier = RemoteTier::new(Arc::clone(&store), Some(Arc::clone(&rec)));
                let mut mine: Vec<ActionEntry> = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) || n < 10 {
                    n += 1;
                    // Upload one, then use one of ours again.
                    let (e, body) = entry(3000);
                    put_entry(&*store, &e, &body);
                    let t = real_now();
                    rec.record_use(e.action, e.output, t);
                    rec.count(t, |c| c.uploads += 1);
                    mine.push(e);
                    let again = mine[fastrand::usize(..mine.len())];
                    let t = real_now();
                    let hit = tier.fetch(again.action, &mut Vec::new(), t).unwrap();
                    rec.flush(&*store, t).unwrap();
                    let at = Instant::now();
                    let mut l = logged.lock().unwrap();
                    l.push((e, t, at));
                    if hit.is_some() {
                        l.push((again, t, at));
                    }
                }
                sessions.lock().unwrap().push((rec.session(), rec.counts()));
            });
        }
        for t in 0..2 {
            let (stop, trims, url) = (&stop, &trims, url.clone());
            s.spawn(move || {
                let store = g.store_on(t, url, &g.rw);
                let opts = RemoteTrimOptions {
                    limits: RemoteLimits {
                        budget: Some(budget),
                        grace,
                    },
                    dry_run: false,
                };
                for _ in 0..6 {
                    let started = Instant::now();
                    let now = real_now();
                    let r = remote_trim(&store, &opts, now, &Silent).unwrap();
                    assert!(r.delete_failures.is_empty(), "{:?}", r.delete_failures);
                    trims.lock().unwrap().push((
                        started,
                        now,
                        r.plan.victims.iter().map(|v| v.key).collect(),
                    ));
                    std::thread::sleep(Duration::from_millis(200));
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
    });

    let logged = logged.into_inner().unwrap();
    let trims = trims.into_inner().unwrap();
    assert!(logged.len() >= 20, "{}", logged.len());
    // No trim chose an object whose use inside its grace period was logged
    // before it started.
    for (started, now, victims) in &trims {
        for (e, t, at) in &logged {
            if at < started && *t > now - grace {
                for k in [ObjectKey::Action(e.action), ObjectKey::Output(e.output)] {
                    assert!(
                        !victims.contains(&k),
                        "a trim at {now} took {k:?}, used at {t}"
                    );
                }
            }
        }
    }
    // The budget did its work on the old entries.
    let gone_old = old
        .iter()
        .filter(|e| !exists(&store, &keys::output_key(e.output)))
        .count();
    assert!(gone_old > 0, "no old entry was evicted");

    // Every use logged is still known, for every object still there, and
    // every session's counters survive whole.
    let mut all = Uses::default();
    for m in list_all(&store, keys::USES).unwrap() {
        if let RemoteKey::Uses(_) = RemoteKey::parse(&m.key) {
            let data = get_bytes(&store, &m.key, 1 << 30).unwrap().unwrap();
            all.merge(&Uses::decode(&data).unwrap());
        }
    }
    for (e, t, _) in &logged {
        if exists(&store, &keys::action_key(e.action)) {
            let known = all.actions.get(&e.action).map(|u| u.last_use);
            assert!(
                known >= Some(*t),
                "use of {} at {t} lost: {known:?}",
                e.action
            );
        }
    }
    for (session, counts) in sessions.into_inner().unwrap() {
        let kept = all.sessions.get(&session).copied().unwrap_or_default();
        assert_eq!(kept.uploads, counts.uploads, "session {session}");
        assert_eq!(kept.lookups, counts.lookups, "session {session}");
    }
}

// The command line: `gocache remote stats` and `gocache remote trim`.

/// `gocache ARGS` with the cluster's endpoint, region and `key` in the
/// AWS variables, as an operator's shell would have them.
pub(crate) fn remote_cmd(g: &GarageCluster, key: &Key, args: &[&str]) -> std::process::Command {
    let mut cmd = bare_cmd(args);
    for (k, v) in g.env(key) {
        cmd.env(k, v);
    }
    cmd
}

/// `gocache ARGS` with no AWS variable set.
fn bare_cmd(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(gocache_bin());
    cmd.args(args);
    crate::support::garage::clear_aws_env(&mut cmd);
    cmd
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_fits_80_columns(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "over 80 columns: {line:?}\n{text}"
        );
    }
}

/// Every key under the prefix with its size: what "nothing changed" means.
fn listing(store: &dyn ObjectStore) -> Vec<(String, u64)> {
    list_all(store, "")
        .unwrap()
        .into_iter()
        .map(|m| (m.key, m.size))
        .collect()
}

#[test]
fn remote_stats_reports_what_was_seeded() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let now = real_now();
    let entries = seed(&*store, 3, 2000);
    // One session hits two entries and misses one.
    let rec = Arc::new(UseRecorder::new(now));
    let tier = RemoteTier::new(Arc::clone(&store), Some(Arc::clone(&rec)));
    for e in &entries[..2] {
        assert!(
            tier.fetch(e.action, &mut Vec::new(), now)
                .unwrap()
                .is_some()
        );
    }
    assert!(
        tier.fetch(Id([0xee; 32]), &mut Vec::new(), now)
            .unwrap()
            .is_none()
    );
    rec.flush(&*store, now).unwrap();
    store.put("other/x", PutBody::Bytes(b"12345")).unwrap();
    let log_bytes: u64 = list_all(&*store, keys::USES)
        .unwrap()
        .iter()
        .map(|m| m.size)
        .sum();
    let before = listing(&*store);
    let url = url.to_string();

    // Read-only credentials are enough.
    let s = json(&run_ok(remote_cmd(
        g,
        &g.ro,
        &["remote", "stats", &url, "--json"],
    )));
    assert_eq!(s["url"], url);
    assert!(s["store"].as_str().unwrap().contains(&g.endpoint()), "{s}");
    assert_eq!(s["actions"]["objects"], 3);
    assert_eq!(s["actions"]["bytes"], 3 * 175);
    assert_eq!(s["outputs"]["objects"], 3);
    assert_eq!(s["outputs"]["bytes"], 6000);
    assert_eq!(s["total"]["objects"], 6);
    assert_eq!(s["total"]["bytes"], 6000 + 3 * 175);
    assert_eq!(s["logs"]["objects"], 1);
    assert_eq!(s["logs"]["bytes"], log_bytes);
    assert_eq!(s["snapshots"]["objects"], 0);
    assert_eq!(s["other"]["objects"], 1);
    assert_eq!(s["other"]["bytes"], 5);
    assert_eq!(s["prefix_bytes"], 6000 + 3 * 175 + log_bytes + 5);
    assert_eq!(s["sessions"], 1);
    assert_eq!(s["counts"]["lookups"], 3);
    assert_eq!(s["counts"]["hits"], 2);
    assert_eq!(s["hit_share"].as_f64(), Some(2.0 / 3.0));
    assert_eq!(s["age"][0]["bucket"], "<1h");
    assert_eq!(s["age"][0]["objects"], 6);
    assert!(s["oldest_upload"].as_i64().unwrap() <= s["newest_upload"].as_i64().unwrap());

    let out = run_ok(remote_cmd(g, &g.ro, &["remote", "stats", &url]));
    let text = stdout(&out);
    assert_fits_80_columns(&text);
    assert!(text.contains("2 of 3 lookups hit (67%)"), "{text}");
    assert!(text.contains("6, 6.37 KiB: 3 action entries"), "{text}");
    assert!(text.contains("1 session in 30 days"), "{text}");
    assert!(text.contains("1 not merged yet"), "{text}");
    assert_eq!(listing(&*store), before, "stats changes nothing");
}

#[test]
fn remote_trim_evicts_by_fleet_wide_last_use_and_says_what_went() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let entries = seed(&store, 6, 10_000);
    // The CLI reads the real clock, and an object's last use is the later
    // of its upload and its logged uses: so the uses are logged a second
    // and two seconds after the last upload, and the trim runs once both
    // are past, with no grace period.
    let last_upload = list_all(&store, "")
        .unwrap()
        .iter()
        .map(|m| m.last_modified)
        .max()
        .unwrap();
    // Machine A used entries 0-3; machine B used 0-1 later. Nobody used 4-5
    // since they were uploaded (last, after 0-3).
    log_uses(&store, &entries[0..4], last_upload + 1);
    log_uses(&store, &entries[0..2], last_upload + 2);
    while real_now() < last_upload + 3 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log_bytes: u64 = list_all(&store, keys::USES)
        .unwrap()
        .iter()
        .map(|m| m.size)
        .sum();
    // Room for two entries and the logs, not three.
    let budget = (2 * 10_175 + log_bytes + 1000).to_string();
    let url = url.to_string();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "remote",
            "trim",
            url.as_str(),
            "--budget",
            &budget,
            "--grace",
            "0",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<String>>()
    };
    let run = |extra: &[&'static str], key: &Key| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        remote_cmd(g, key, &a)
    };
    let group = |i: usize| {
        [
            keys::action_key(entries[i].action),
            keys::output_key(entries[i].output),
        ]
    };
    let expect_gone: Vec<String> = [4, 5, 2, 3].iter().flat_map(|&i| group(i)).collect();

    // A dry run says what would go, and changes nothing.
    let before = listing(&store);
    let dry = json(&run_ok(run(&["--dry-run", "--json"], &g.rw)));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["budget_met"], true);
    assert_eq!(dry["deleted"], 0);
    assert_eq!(dry["snapshot"], serde_json::Value::Null);
    let victims = |v: &serde_json::Value| -> Vec<String> {
        v["plan"]["victims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut planned = victims(&dry);
    planned.sort();
    let mut want = expect_gone.clone();
    want.sort();
    assert_eq!(planned, want);
    assert_eq!(listing(&store), before, "a dry run changes nothing");
    let text = stdout(&run_ok(run(&["--dry-run", "-v"], &g.rw)));
    assert_fits_80_columns(&text);
    assert!(text.contains("would delete 8 objects"), "{text}");
    assert_eq!(text.matches("would delete a/").count(), 4, "{text}");
    assert_eq!(listing(&store), before, "a dry run changes nothing");

    // Read-only credentials: a clear error, exit 1, nothing changed.
    let out = run_expecting(run(&[], &g.ro), 1);
    let err = stderr(&out);
    assert!(err.contains("may list, read, write and delete"), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(listing(&store), before, "a refused trim changes nothing");

    let r = json(&run_ok(run(&["--json"], &g.rw)));
    assert_eq!(r["dry_run"], false);
    assert_eq!(r["budget_met"], true);
    assert_eq!(r["deleted"], 8);
    assert_eq!(r["deleted_bytes"], 4 * 10_175);
    assert_eq!(
        (r["logs_merged"].as_u64(), r["uses_deleted"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(r["limits"]["budget"], budget.parse::<u64>().unwrap());
    assert_eq!(r["limits"]["grace"], 0);
    assert!(r["snapshot"].as_str().unwrap().starts_with("uses/"), "{r}");
    // The least recently used fleet-wide first: 4-5 (never used since
    // uploaded, though uploaded last), then 2-3 (used by A only); 0-1 stay
    // because B used them after A.
    let went = victims(&r);
    let first: std::collections::BTreeSet<&String> = went[..4].iter().collect();
    assert_eq!(
        first,
        [4, 5]
            .iter()
            .flat_map(|&i| group(i))
            .collect::<Vec<_>>()
            .iter()
            .collect()
    );
    assert!(
        r["plan"]["victims"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["rule"] == "budget")
    );
    for (i, _) in entries.iter().enumerate() {
        let kept = i < 2;
        for k in group(i) {
            assert_eq!(exists(&store, &k), kept, "entry {i}: {k}");
        }
    }

    // Within budget now: a second trim deletes nothing.
    let text = stdout(&run_ok(run(&[], &g.rw)));
    assert_fits_80_columns(&text);
    assert!(text.contains("deleted 0 objects"), "{text}");
    assert!(text.contains("budget met"), "{text}");

    // A budget the grace period keeps from being met: exit 3, says why.
    let kept = listing(&store);
    let out = run_expecting(
        remote_cmd(
            g,
            &g.rw,
            &["remote", "trim", &url, "--budget", "0B", "--grace", "1h"],
        ),
        3,
    );
    let text = stdout(&out);
    assert_fits_80_columns(&text);
    assert!(text.contains("budget not met"), "{text}");
    assert!(text.contains("inside the grace period"), "{text}");
    let still: Vec<(String, u64)> = listing(&store)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(keys::USES))
        .collect();
    let had: Vec<(String, u64)> = kept
        .into_iter()
        .filter(|(k, _)| !k.starts_with(keys::USES))
        .collect();
    assert_eq!(still, had);

    // Under cron (-q), what needs a look still says so, in one line, as
    // `gocache trim -q` does.
    let out = run_expecting(
        remote_cmd(
            g,
            &g.rw,
            &[
                "-q", "remote", "trim", &url, "--budget", "0B", "--grace", "1h",
            ],
        ),
        3,
    );
    assert_eq!(stdout(&out), "", "-q prints no report");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("gocache: budget not met: still ")
            && err.contains("inside the grace period"),
        "{err}"
    );
}

#[test]
fn remote_commands_on_a_down_store_fail_within_the_timeout_saying_what_to_check() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let endpoint = format!("http://127.0.0.1:{port}");
    for sub in [&["stats"][..], &["trim", "--budget", "1GiB"][..]] {
        let mut args = vec!["remote", sub[0], "s3://go-cache/ci"];
        args.extend_from_slice(&sub[1..]);
        args.extend_from_slice(&["--endpoint", &endpoint, "--region", "garage"]);
        let mut cmd = bare_cmd(&args);
        cmd.env("AWS_ACCESS_KEY_ID", "GK0000")
            .env("AWS_SECRET_ACCESS_KEY", "x");
        let t = Instant::now();
        let out = run_expecting(cmd, 1);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let err = stderr(&out);
        assert!(err.contains("is the store up"), "{err}");
        assert!(err.contains(&endpoint), "{err}");
        assert!(err.contains("s3://go-cache/ci"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    }
}

#[test]
fn remote_commands_refuse_bad_input_with_exit_2() {
    /// Arguments, environment, and what the error says.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["remote", "stats", "gs://bucket/x"],
            &[],
            "`gs://` remotes are not supported",
        ),
        (&["remote", "stats", "go-cache"], &[], "not a remote URL"),
        (
            &["remote", "trim", "s3://Go_Cache/x", "--budget", "1GiB"],
            &[],
            "bucket name `Go_Cache`",
        ),
        (
            &["remote", "trim", "s3://go-cache/x", "--budget", "10%"],
            &[],
            "not a share",
        ),
        (
            &["remote", "trim", "s3://go-cache/x", "--budget", "0"],
            &[],
            "0B",
        ),
        (&["remote", "trim", "s3://go-cache/x"], &[], "--budget"),
        (
            &[
                "remote",
                "stats",
                "s3://go-cache/x",
                "--endpoint",
                "ftp://host",
            ],
            &[],
            "is not http or https",
        ),
        (
            &["remote", "stats", "s3://go-cache/x"],
            &[("AWS_ACCESS_KEY_ID", "GK0000")],
            "AWS_SECRET_ACCESS_KEY is not",
        ),
    ];
    for (args, env, want) in cases {
        let mut cmd = bare_cmd(args);
        cmd.envs(env.iter().copied());
        let out = run_expecting(cmd, 2);
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn trim_and_stats_with_remote_are_the_remote_commands() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let url = url.to_string();
    seed(&store, 3, 1000);
    let a = json(&run_ok(remote_cmd(
        g,
        &g.rw,
        &["stats", "--remote", &url, "--json"],
    )));
    let b = json(&run_ok(remote_cmd(
        g,
        &g.rw,
        &["remote", "stats", &url, "--json"],
    )));
    assert_eq!(a["total"], b["total"], "{a}\n{b}");
    assert_eq!(a["url"], b["url"]);
    // A dry run through either name plans the same.
    let args = ["--budget", "1KiB", "--grace", "0s", "--dry-run", "--json"];
    let mut t1 = vec!["trim", "--remote", &url];
    t1.extend(args);
    let mut t2 = vec!["remote", "trim", &url];
    t2.extend(args);
    let a = json(&run_ok(remote_cmd(g, &g.rw, &t1)));
    let b = json(&run_ok(remote_cmd(g, &g.rw, &t2)));
    assert_eq!(a["plan"], b["plan"], "{a}\n{b}");
    assert_eq!(a["dry_run"], true);
    // What a bucket has no use for is refused as bad input.
    for bad in [
        &["--budget", "10%"][..],
        &["--budget", "1GiB", "--exe-quota", "1GiB"][..],
        &["--budget", "1GiB", "--policy", "gdsf"][..],
        &[][..],
    ] {
        let mut args = vec!["trim", "--remote", &url];
        args.extend_from_slice(bad);
        let out = run_expecting(remote_cmd(g, &g.rw, &args), 2);
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
}
