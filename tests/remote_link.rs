//! The remote tier as a fleet meets it off loopback: compressed objects
//! (smaller, still verified, readable beside the older as-is form), and a
//! store behind a shaped link (`support::shaped`: the delay and rate of a
//! real one, stalls and resets mid-answer), where the tier must still
//! degrade as promised.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gocache::layout::{ActionEntry, Id};
use gocache::remote::codec;
use gocache::remote::keys::{self, RemoteKey};
use gocache::remote::s3::{S3Config, S3Overrides, S3Store, Timeouts};
use gocache::remote::store::{ObjectStore, PutBody, list_all, meta_value};
use gocache::remote::tier::{
    FetchError, RemoteTier, UploadBody, UploadJob, Uploader, UploaderOptions, UseRecorder,
};
use gocache::remote::{RemoteTrimOptions, RemoteUrl, remote_stats, remote_trim};
use gocache::report::Silent;
use sha2::Digest;

use crate::support::garage::{GarageCluster, REGION};
use crate::support::shaped::{Fault, Shape, ShapedLink};

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Bytes that compress somewhat better than Go's outputs (4.5x at level
/// 1, against 3.7x): words of code with some noise.
fn compressible(len: usize) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"func ",
        b"return ",
        b"runtime.",
        b"0x00000000",
        b"\n\t",
        b"type ",
        b"go:build ",
        b"interface{}",
    ];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if fastrand::u8(..) < 60 {
            out.push(fastrand::u8(..));
        } else {
            out.extend_from_slice(words[fastrand::usize(..words.len())]);
        }
    }
    out.truncate(len);
    out
}

fn random(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    fastrand::fill(&mut b);
    b
}

/// The action entry naming `body`, for a random action.
fn entry_for(body: &[u8]) -> ActionEntry {
    let mut action = [0u8; 32];
    fastrand::fill(&mut action);
    ActionEntry {
        action: Id(action),
        output: Id(sha2::Sha256::digest(body).into()),
        size: body.len() as u64,
        time_nanos: 1_767_323_045_000_000_000,
    }
}

/// Uploads `bodies` through an uploader (compressing as `level` says),
/// half from memory, half from files; returns their entries.
fn upload_all(
    store: &Arc<dyn ObjectStore>,
    bodies: &[Vec<u8>],
    level: Option<i32>,
) -> Vec<ActionEntry> {
    let now = real_now();
    let rec = Arc::new(UseRecorder::new(now));
    let opts = UploaderOptions {
        compression: level,
        ..UploaderOptions::default()
    };
    let up = Uploader::start(Arc::clone(store), rec, opts, Arc::new(real_now));
    let mut entries = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        let e = entry_for(b);
        let body = if i % 2 == 0 {
            UploadBody::Bytes(b.clone())
        } else {
            let mut f = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut f, b).unwrap();
            UploadBody::File(f)
        };
        assert!(up.try_enqueue(UploadJob { entry: e, body }));
        entries.push(e);
    }
    let c = up.drain(Instant::now() + Duration::from_secs(120));
    assert_eq!(c.uploaded as usize, bodies.len(), "{c:?}");
    entries
}

/// Stored size of every key under the prefix.
fn sizes(store: &dyn ObjectStore) -> std::collections::HashMap<String, u64> {
    list_all(store, "")
        .unwrap()
        .into_iter()
        .map(|m| (m.key, m.size))
        .collect()
}

#[test]
fn outputs_are_stored_compressed_where_it_pays_and_served_verified() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    // Tiny, compressible (kept in memory once compressed), compressible
    // and large enough to be compressed twice as it is sent, and random
    // bytes (which do not compress).
    let bodies = vec![
        compressible(500),
        compressible(200_000),
        compressible(24 << 20),
        random(300_000),
        compressible(1 << 20),
        compressible(0),
    ];
    let expect_compressed = [false, true, true, false, true, false];
    assert!(bodies[0].len() < codec::MIN_SIZE as usize);
    let entries = upload_all(&store, &bodies, Some(codec::DEFAULT_LEVEL));
    let listed = sizes(&*store);
    for ((e, body), expect) in entries.iter().zip(&bodies).zip(expect_compressed) {
        let zkey = keys::compressed_key(e.output, e.size);
        let okey = keys::output_key(e.output);
        let compressed = listed.contains_key(&zkey);
        assert_eq!(
            compressed,
            !listed.contains_key(&okey),
            "one form per output: {listed:?}"
        );
        assert_eq!(compressed, expect, "{} bytes", body.len());
        if compressed {
            let stored = listed[&zkey];
            assert!(
                stored * 5 < body.len() as u64 * 2,
                "{stored} of {}",
                body.len()
            );
            // The action entry says where its output is.
            let mut a = Vec::new();
            let (_, meta) = store
                .get_with_meta(&keys::action_key(e.action), 175, &mut a)
                .unwrap()
                .unwrap();
            assert_eq!(meta_value(&meta, keys::OUTPUT_FORM), Some(keys::ZSTD));
            // What a version before compression asks for is not there: a
            // miss to it, never bytes it cannot read.
            assert_eq!(store.head(&okey).unwrap(), None);
        } else {
            assert_eq!(listed[&okey], body.len() as u64);
        }
    }
    // Every output comes back whole and verified, whatever its form.
    let tier = RemoteTier::new(Arc::clone(&store), None);
    for (e, body) in entries.iter().zip(&bodies) {
        let mut sink = Vec::new();
        assert_eq!(
            tier.fetch(e.action, &mut sink, real_now()).unwrap(),
            Some(*e)
        );
        assert!(sink == *body, "{} bytes", body.len());
    }

    // Stats: stored and logical bytes, against the listing and the
    // bodies.
    let s = remote_stats(&*store, real_now()).unwrap();
    let stored: u64 = listed
        .iter()
        .filter(|(k, _)| !k.starts_with("uses/"))
        .map(|(_, n)| n)
        .sum();
    let logical: u64 = bodies.iter().map(|b| b.len() as u64 + 175).sum();
    assert_eq!(s.stored_bytes, stored);
    assert_eq!(s.total.bytes, stored);
    assert_eq!(s.logical_bytes, logical);
    assert_eq!(s.compressed.objects, 3);
    assert_eq!(s.outputs.objects, 6);
    let ratio = s.compression_ratio.unwrap();
    assert!((ratio - logical as f64 / stored as f64).abs() < 1e-9);
    assert!(ratio > 2.0, "{ratio}");
}

#[test]
fn older_objects_both_forms_and_bad_compressed_objects() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let tier = RemoteTier::new(Arc::clone(&store), None);
    let now = real_now();
    let fetch = |e: &ActionEntry| {
        let mut sink = Vec::new();
        tier.fetch(e.action, &mut sink, now)
            .map(|r| r.map(|_| sink))
    };

    // As a version before compression wrote it, or `--remote-compression
    // off`: read as ever.
    let old = compressible(50_000);
    let e_old = upload_all(&store, std::slice::from_ref(&old), None)[0];
    assert!(
        store
            .head(&keys::output_key(e_old.output))
            .unwrap()
            .is_some()
    );
    assert_eq!(fetch(&e_old).unwrap().unwrap(), old);

    // Compressed, but the action entry lost its metadata (a store that
    // drops it, or an older writer's entry over it): found all the same.
    let body = compressible(60_000);
    let e = upload_all(&store, std::slice::from_ref(&body), Some(3))[0];
    store
        .put(
            &keys::action_key(e.action),
            PutBody::Bytes(e.format().as_bytes()),
        )
        .unwrap();
    assert_eq!(fetch(&e).unwrap().unwrap(), body);
    // The entry names the compressed form, which is gone, but an older
    // writer stored it as it is: found.
    let body = compressible(70_000);
    let e = upload_all(&store, std::slice::from_ref(&body), Some(3))[0];
    let zkey = keys::compressed_key(e.output, e.size);
    store.delete_many(std::slice::from_ref(&zkey)).unwrap();
    assert_eq!(fetch(&e).unwrap(), None, "neither form: a miss");
    store
        .put(&keys::output_key(e.output), PutBody::Bytes(&body))
        .unwrap();
    assert_eq!(fetch(&e).unwrap().unwrap(), body);

    // Bad compressed objects: refused, naming the key, never served.
    let body = compressible(80_000);
    let e = upload_all(&store, std::slice::from_ref(&body), Some(3))[0];
    let zkey = keys::compressed_key(e.output, e.size);
    let refused = |z: &[u8], want: &str| {
        store.put(&zkey, PutBody::Bytes(z)).unwrap();
        let err = fetch(&e).unwrap_err();
        assert!(matches!(err, FetchError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&zkey), "{msg}");
        assert!(msg.contains(want), "{want}: {msg}");
    };
    refused(b"not zstd at all, just text", "not a valid zstd stream");
    let other = zstd::bulk::compress(&compressible(80_000), 3).unwrap();
    refused(&other, "not its name");
    // A small object that decompresses past the entry's length: stopped
    // at the length, not after filling a disk.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
    assert!(bomb.len() < 80_000);
    refused(&bomb, "decompresses to more than the 80000 bytes");
    // Cut short: too few bytes.
    let good = zstd::bulk::compress(&body, 3).unwrap();
    refused(
        &good[..good.len() / 2],
        "bytes, but its action entry says 80000",
    );
    // Larger compressed than the output itself: refused before it is read.
    refused(&random(90_000), "bytes or more compressed");
    // And the right bytes, compressed by anyone, are served.
    store.put(&zkey, PutBody::Bytes(&good)).unwrap();
    assert_eq!(fetch(&e).unwrap().unwrap(), body);
}

#[test]
fn trim_budgets_count_stored_bytes_and_take_both_forms_of_an_output() {
    let g = GarageCluster::shared();
    let (_, store) = g.fresh_prefix(&g.rw);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let bodies: Vec<Vec<u8>> = (0..4).map(|_| compressible(400_000)).collect();
    let entries = upload_all(&store, &bodies, Some(3));
    // One output also as it is (an older writer built it too).
    store
        .put(
            &keys::output_key(entries[0].output),
            PutBody::Bytes(&bodies[0]),
        )
        .unwrap();
    let s = remote_stats(&*store, real_now()).unwrap();
    assert_eq!(s.outputs.objects, 5);
    // A budget the stored bytes meet but the logical ones would not:
    // nothing goes.
    assert!(s.logical_bytes > s.prefix_bytes + 100_000);
    let trim = |budget: u64| {
        remote_trim(
            &*store,
            &RemoteTrimOptions {
                limits: gocache::remote::policy::RemoteLimits {
                    budget: Some(budget),
                    grace: 0,
                },
                dry_run: false,
            },
            real_now() + 10,
            &Silent,
        )
        .unwrap()
    };
    let r = trim(s.prefix_bytes + 1000);
    assert_eq!(r.deleted, 0, "{r:?}");
    assert!(r.plan.unmet.is_none());
    // Nothing left: each output goes with its action entry, in both forms.
    let r = trim(0);
    assert_eq!(r.deleted, 9, "{r:?}");
    let left: Vec<String> = list_all(&*store, "")
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| !k.starts_with("uses/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let forms: Vec<RemoteKey> = r
        .plan
        .victims
        .iter()
        .map(|v| RemoteKey::parse(&v.key.key()))
        .filter(|k| matches!(k, RemoteKey::Output(_) | RemoteKey::Compressed(..)))
        .collect();
    assert_eq!(forms.len(), 5, "{forms:?}");
}

/// A store through node 0 of the shared cluster, behind `link`, with
/// `timeouts` (the defaults if `None`).
fn store_via(
    g: &GarageCluster,
    url: &RemoteUrl,
    link: &ShapedLink,
    timeouts: Option<Timeouts>,
) -> Arc<dyn ObjectStore> {
    let o = S3Overrides {
        endpoint: Some(link.endpoint()),
        region: Some(REGION.into()),
        credentials: Some(g.rw.credentials()),
        timeouts,
        ..S3Overrides::default()
    };
    Arc::new(S3Store::new(
        S3Config::resolve(url.clone(), &o, |_| None).unwrap(),
    ))
}

fn node0(g: &GarageCluster) -> std::net::SocketAddr {
    g.endpoint().trim_start_matches("http://").parse().unwrap()
}

#[test]
fn a_shaped_link_delays_and_limits_what_crosses_it() {
    let g = GarageCluster::shared();
    let (url, direct) = g.fresh_prefix(&g.rw);
    direct
        .put("big", PutBody::Bytes(&random(2_500_000)))
        .unwrap();
    let link = ShapedLink::start(node0(g), Shape::new(100, 100)).unwrap();
    let store = store_via(g, &url, &link, None);
    // A small request: a round trip, plus one for the new connection.
    let t = Instant::now();
    assert!(store.head("big").unwrap().is_some());
    let first = t.elapsed();
    assert!(first >= Duration::from_millis(200), "{first:?}");
    let t = Instant::now();
    assert!(store.head("big").unwrap().is_some());
    let again = t.elapsed();
    assert!(
        again >= Duration::from_millis(100) && again < first,
        "a kept-alive connection pays one round trip: {again:?} after {first:?}"
    );
    // 2.5 MB at 100 Mbit/s: 0.2 s on the wire, plus the round trip.
    let t = Instant::now();
    let n = store.get("big", 3 << 20, &mut std::io::sink()).unwrap();
    let took = t.elapsed();
    assert_eq!(n, Some(2_500_000));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(link.bytes_down() > 2_500_000);
    // Two at once share the rate: together no faster than 0.4 s.
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| store.get("big", 3 << 20, &mut std::io::sink()).unwrap());
        }
    });
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_large_output_over_a_slow_link_fits_the_timeouts_and_compression_saves_the_bytes() {
    let g = GarageCluster::shared();
    let (url, direct) = g.fresh_prefix(&g.rw);
    let direct: Arc<dyn ObjectStore> = Arc::new(direct);
    // 12 MB as it is (random bytes) and 12 MB of compressible bytes.
    let raw = random(12_000_000);
    let code = compressible(12_000_000);
    let entries = upload_all(&direct, &[raw.clone(), code.clone()], Some(3));
    let link = ShapedLink::start(node0(g), Shape::new(20, 100)).unwrap();
    // The default timeouts: 12 MB at 100 Mbit/s is about a second.
    let tier = RemoteTier::new(store_via(g, &url, &link, None), None);
    for (e, body, wire) in [(entries[0], &raw, 12_000_000u64), (entries[1], &code, 0)] {
        let before = link.bytes_down();
        let t = Instant::now();
        let mut sink = Vec::new();
        assert_eq!(
            tier.fetch(e.action, &mut sink, real_now()).unwrap(),
            Some(e)
        );
        let took = t.elapsed();
        assert!(sink == *body);
        let crossed = link.bytes_down() - before;
        eprintln!(
            "{} bytes fetched in {took:?}, {crossed} on the link",
            body.len()
        );
        if wire > 0 {
            assert!(crossed >= wire, "{crossed}");
            assert!(took >= Duration::from_millis(960), "{took:?}");
        } else {
            assert!(crossed * 5 < body.len() as u64 * 2, "{crossed}");
        }
        assert!(took < Duration::from_secs(20), "{took:?}");
    }
    // Uploads over it too, within their timeouts.
    let link_store = store_via(g, &url, &link, None);
    let t = Instant::now();
    let up = upload_all(&link_store, &[random(12_000_000)], Some(3));
    assert!(
        t.elapsed() >= Duration::from_millis(960),
        "{:?}",
        t.elapsed()
    );
    assert!(
        direct
            .head(&keys::output_key(up[0].output))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_store_that_stalls_mid_object_costs_one_stall_then_the_tier_pauses() {
    let g = GarageCluster::shared();
    let (url, direct) = g.fresh_prefix(&g.rw);
    let direct: Arc<dyn ObjectStore> = Arc::new(direct);
    let bodies = [random(2_000_000), compressible(4_000_000)];
    let entries = upload_all(&direct, &bodies, Some(3));
    let link = ShapedLink::start(node0(g), Shape::new(20, 100)).unwrap();
    let timeouts = Timeouts {
        stall: Duration::from_secs(2),
        ..Timeouts::default()
    };
    for (i, e) in entries.iter().enumerate() {
        let tier = RemoteTier::new(store_via(g, &url, &link, Some(timeouts)), None);
        link.arm(Fault::Stall { after: 300_000 });
        let t = Instant::now();
        let now = real_now();
        let err = tier.fetch(e.action, &mut Vec::new(), now).unwrap_err();
        let took = t.elapsed();
        assert!(link.faults_fired() as usize == i + 1, "the stall struck");
        assert!(
            matches!(&err, FetchError::Store(s) if s.is_unavailable()),
            "a stall is the store's, not the object's: {err:?}"
        );
        assert!(err.to_string().contains("2 s without a byte"), "{err}");
        // The stall limit, not the whole request's (30 s and more).
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < Duration::from_secs(6), "{took:?}");
        // Paused: the next lookups answer at once.
        let t = Instant::now();
        let err = tier.fetch(e.action, &mut Vec::new(), now + 1).unwrap_err();
        assert!(matches!(err, FetchError::Paused(_)), "{err:?}");
        assert!(t.elapsed() < Duration::from_millis(50));
        // After the pause, the store is asked again, and serves.
        let mut sink = Vec::new();
        assert_eq!(tier.fetch(e.action, &mut sink, now + 31).unwrap(), Some(*e));
        assert!(sink == bodies[i]);
    }
}

#[test]
fn a_connection_reset_mid_body_is_the_networks_fault_not_the_objects() {
    let g = GarageCluster::shared();
    let (url, direct) = g.fresh_prefix(&g.rw);
    let direct: Arc<dyn ObjectStore> = Arc::new(direct);
    let bodies = [random(1_000_000), compressible(3_000_000)];
    let entries = upload_all(&direct, &bodies, Some(3));
    let link = ShapedLink::start(node0(g), Shape::new(20, 100)).unwrap();
    for (i, e) in entries.iter().enumerate() {
        let rec = Arc::new(UseRecorder::new(real_now()));
        let tier = RemoteTier::new(store_via(g, &url, &link, None), Some(Arc::clone(&rec)));
        link.arm(Fault::Reset { after: 200_000 });
        let t = Instant::now();
        let now = real_now();
        let err = tier.fetch(e.action, &mut Vec::new(), now).unwrap_err();
        assert_eq!(link.faults_fired() as usize, i + 1);
        assert!(
            matches!(&err, FetchError::Store(s) if s.is_unavailable()),
            "{err:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // Counted as an error, not a refusal: nothing is wrong with the
        // object, and it is served once the pause is over.
        let c = rec.counts();
        assert_eq!((c.errors, c.refused, c.hits), (1, 0, 0), "{c:?}");
        let mut sink = Vec::new();
        assert_eq!(tier.fetch(e.action, &mut sink, now + 31).unwrap(), Some(*e));
        assert!(sink == bodies[i]);
    }
}
