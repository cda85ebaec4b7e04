//! The wrapper's unit tests, beside it (`src/wrapper.rs`).

use super::*;

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

#[test]
fn go_run_gets_the_shim_unless_it_has_exec() {
    let shim = Path::new("/opt/my tools/gocache");
    let got = with_exec_shim(&os(&["run", ".", "-x"]), shim).unwrap();
    assert_eq!(
        got,
        os(&[
            "run",
            "-exec",
            "'/opt/my tools/gocache' __exec-shim",
            ".",
            "-x"
        ])
    );
    let got = with_exec_shim(&os(&["-C", "dir", "run", "x.go"]), shim);
    assert!(
        got.is_none(),
        "-C dir: 'dir' is the first non-flag, not run"
    );
    assert!(with_exec_shim(&os(&["run", "-exec", "qemu", "."]), shim).is_none());
    assert!(with_exec_shim(&os(&["run", "-exec=qemu", "."]), shim).is_none());
    assert!(with_exec_shim(&os(&["build", "run"]), shim).is_none());
    assert!(with_exec_shim(&os(&["run", "."]), Path::new("/a'b/gocache")).is_none());
}

#[test]
fn hooks_and_tools() {
    assert!(wants_hook(&os(&["build", "./..."])));
    assert!(!wants_hook(&os(&["version"])));
    assert!(!wants_hook(&os(&[])));
    assert_eq!(
        tool_name(&os(&[
            "tool",
            "-n",
            "golang.org/x/tools/cmd/stringer",
            "-type=X"
        ])),
        Some("stringer".into())
    );
    assert_eq!(tool_name(&os(&["tool", "vet"])), Some("vet".into()));
    assert_eq!(tool_name(&os(&["run", "tool"])), None);
}

#[test]
fn go_run_is_left_to_go_with_its_own_exec_or_when_it_prints_its_commands() {
    let shim = Path::new("/bin/gocache");
    for own in [
        &["run", "-n", "."][..],
        &["run", "-x", "."],
        &["run", "--x=true", "."],
        &["run", "-tags", "x", "-n", "."],
        &["run", "-exec", "qemu", "."],
    ] {
        assert!(with_exec_shim(&os(own), shim).is_none(), "{own:?}");
    }
    for ours in [
        &["run", "-n=false", "."][..],
        // After the package: the program's flags, not go's.
        &["run", ".", "-n"],
        &["run", "main.go", "-exec", "x"],
        // -tags takes "-n" as its value.
        &["run", "-tags", "-n", "."],
    ] {
        assert!(with_exec_shim(&os(ours), shim).is_some(), "{ours:?}");
    }
    for (goflags, keeps) in [
        ("-mod=mod", false),
        ("-mod=mod -exec=/opt/qemu", true),
        ("'-exec=qemu-arm -L /x' -mod=mod", true),
        ("-n", true),
        ("-x=false -trimpath", false),
        ("", false),
    ] {
        assert_eq!(
            goflags_keep_go_run(OsStr::new(goflags)),
            keeps,
            "{goflags:?}"
        );
    }
    assert_eq!(
        split_quoted(b" a 'b c'  \"d e\" f"),
        [&b"a"[..], b"b c", b"d e", b"f"]
    );
}

#[test]
fn this_process_is_known_by_its_parent_and_its_file() {
    let me = std::process::id();
    assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
    let exe = std::env::current_exe().unwrap();
    assert_eq!(runs_file(me, &exe), Some(true));
    assert_eq!(runs_file(me, Path::new("/bin/sh")), Some(false));
    assert_eq!(parent_of(u32::MAX), None);
}

#[test]
fn only_executables_in_this_cache_count() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let hex = "ab".repeat(32);
    let exe = cache.join("ab").join(format!("{hex}-d")).join("hello");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    std::fs::write(&exe, "").unwrap();
    assert_eq!(
        cached_exe_entry(&exe, &cache).unwrap().rel_path(),
        format!("ab/{hex}-d")
    );
    let other = dir.path().join("other");
    assert!(cached_exe_entry(&exe, &other).is_none());
    let wrong_sub = cache.join("cd").join(format!("{hex}-d")).join("hello");
    assert!(cached_exe_entry(&wrong_sub, &cache).is_none());
    assert!(cached_exe_entry(Path::new("/tmp/go-build123/b001/exe/hello"), &cache).is_none());
    let uses = dir.path().join("uses");
    std::fs::write(&uses, format!("{}\n/tmp/x/y\n", exe.display())).unwrap();
    assert_eq!(read_uses(&uses, &cache).len(), 1);
}

#[test]
fn the_real_go_is_not_ourselves() {
    let dir = tempfile::tempdir().unwrap();
    let me = dir.path().join("gocache");
    std::fs::write(&me, "").unwrap();
    std::fs::set_permissions(&me, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let shim_dir = dir.path().join("shim");
    std::fs::create_dir(&shim_dir).unwrap();
    std::os::unix::fs::symlink(&me, shim_dir.join("go")).unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    std::fs::write(real_dir.join("go"), "").unwrap();
    std::fs::set_permissions(
        real_dir.join("go"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = std::env::join_paths([&shim_dir, &real_dir]).unwrap();
    assert_eq!(
        find_real_go(None, Some(&path), &me, &[]).unwrap(),
        real_dir.join("go")
    );
    let only_me = std::env::join_paths([&shim_dir]).unwrap();
    assert!(matches!(
        find_real_go(None, Some(&only_me), &me, &[]),
        Err(FindGoError::NotFound(s)) if s == [(shim_dir.join("go"), Skipped::Itself)]
    ));
    assert!(matches!(
        find_real_go(Some(OsStr::new("relative/go")), Some(&path), &me, &[]),
        Err(FindGoError::BadEnv(_))
    ));
    // A candidate seen to start gocache again is passed over.
    let loops = [real_dir.join("go")];
    let e = find_real_go(None, Some(&path), &me, &loops).unwrap_err();
    assert!(e.to_string().contains("runs gocache again"), "{e}");
    assert!(matches!(
        find_real_go(Some(real_dir.join("go").as_os_str()), None, &me, &loops),
        Err(FindGoError::EnvIsGocache(_, Skipped::Loops))
    ));
}

/// An ELF64 little-endian header with one PT_NOTE segment holding
/// `notes`.
fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little-endian
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
    f[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
    f[ph + 48..ph + 56].copy_from_slice(&4u64.to_le_bytes());
    f.extend_from_slice(notes);
    f
}

fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&(name.len() as u32).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&kind.to_le_bytes());
    n.extend_from_slice(name);
    n.resize(n.len().div_ceil(4) * 4, 0);
    n.extend_from_slice(desc);
    n.resize(n.len().div_ceil(4) * 4, 0);
    n
}

#[test]
fn the_marker_note_is_found_among_other_notes_and_nowhere_else() {
    let gnu = note(b"GNU\0", 3, &[0xab; 20]);
    let ours = note(b"gocache\0", MARKER_NOTE_TYPE, b"wrapper\0");
    assert!(has_marker_note(&elf_with_notes(
        &[gnu.clone(), ours.clone()].concat()
    )));
    assert!(!has_marker_note(&elf_with_notes(&gnu)));
    // The right name with another type, or cut off by the segment.
    assert!(!has_marker_note(&elf_with_notes(&note(
        b"gocache\0",
        1,
        b"wrapper\0"
    ))));
    let mut cut = elf_with_notes(&ours);
    cut.truncate(cut.len() - 20);
    assert!(!has_marker_note(&cut));
    // Not ELF: a script that happens to hold the name.
    assert!(!has_marker_note(
        b"#!/bin/sh\nexec gocache go \"$@\"\n gocache\0 gcwr"
    ));
    assert!(!has_marker_note(&[]));
    // The in-memory note is laid out as an ELF note.
    // SAFETY: MarkerNote is repr(C), five plain fields and no padding.
    let bytes: &[u8] = unsafe {
        std::slice::from_raw_parts(
            (&MARKER_NOTE as *const MarkerNote).cast::<u8>(),
            std::mem::size_of::<MarkerNote>(),
        )
    };
    if cfg!(target_endian = "little") {
        assert_eq!(bytes, &ours[..]);
    }
}

#[test]
fn a_handoff_comes_back_only_to_the_candidates_own_process() {
    let h = Handoff {
        pid: 100,
        spawned: true,
        go: PathBuf::from("/opt/my bin/go"),
    };
    assert_eq!(Handoff::parse(&h.to_env()), Some(h.clone()));
    // Spawned: the candidate (or what it exec'd) is the wrapper's child.
    assert!(h.came_back(200, 100));
    // A go the candidate started (go generate) is a grandchild.
    assert!(!h.came_back(300, 200));
    let e = Handoff {
        pid: 200,
        spawned: false,
        go: PathBuf::from("/usr/bin/go"),
    };
    assert_eq!(Handoff::parse(&e.to_env()), Some(e.clone()));
    // Exec'd: the candidate keeps the wrapper's pid; its children not.
    assert!(e.came_back(200, 100));
    assert!(!e.came_back(300, 200));
    for bad in [
        "",
        "spawn:x:/go",
        "exec:1:relative",
        "fork:1:/go",
        "spawn:1",
    ] {
        assert_eq!(Handoff::parse(OsStr::new(bad)), None, "{bad:?}");
    }
}
