//! Which Go module a go command works in: the directory holding the
//! `go.mod` at or above its working directory, and the module path that
//! file declares. The wrapper (`gocache go`) and `gocache prog` credit the
//! cache entries a go command adds or uses to it, so that `stats` can say
//! which projects hold the bytes.
//!
//! As the go command finds its main module (`modload.findModuleRoot`): the
//! nearest `go.mod` walking up from the working directory (`go -C DIR`
//! changes it first). A go command outside any module (`GO111MODULE=off`,
//! `go run file.go` in a bare directory, `go install pkg@version`) has
//! none. Workspaces (`go.work`) are credited to the module the command ran
//! in. Nothing here runs go: a few `stat`s and one read of at most
//! [`GO_MOD_READ`] bytes.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

/// How much of a `go.mod` is read looking for its `module` line (it comes
/// first, after comments, in every go.mod Go writes).
pub const GO_MOD_READ: u64 = 16 * 1024;

/// A Go module on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The directory holding its `go.mod` (absolute).
    pub root: PathBuf,
    /// The module path its `go.mod` declares (`example.com/hello`), when
    /// it could be read.
    pub path: Option<String>,
}

impl Module {
    /// The module `dir` is in: the nearest directory at or above it that
    /// holds a `go.mod` file. `None` outside any module.
    pub fn find(dir: &Path) -> Option<Module> {
        let dir = std::path::absolute(dir).ok()?;
        let root = dir
            .ancestors()
            .find(|d| std::fs::metadata(d.join("go.mod")).is_ok_and(|m| m.is_file()))?;
        Some(Module {
            root: root.to_owned(),
            path: read_module_path(&root.join("go.mod")),
        })
    }

    /// How people read it: the module path, else the directory.
    pub fn label(&self) -> String {
        match &self.path {
            Some(p) => p.clone(),
            None => self.root.display().to_string(),
        }
    }
}

/// The directory a go command with arguments `args` runs in, from `cwd`:
/// `go -C DIR …` (or `-C=DIR`, which must come first) changes to `DIR`.
pub fn go_command_dir(args: &[OsString], cwd: &Path) -> PathBuf {
    let dir = match args.first().map(|a| a.as_encoded_bytes()) {
        Some(b"-C" | b"--C") => args.get(1).map(PathBuf::from),
        Some(a) if a.starts_with(b"-C=") || a.starts_with(b"--C=") => {
            let a = args[0].to_string_lossy();
            a.split_once('=').map(|(_, d)| PathBuf::from(d))
        }
        _ => None,
    };
    match dir {
        Some(d) => cwd.join(d),
        None => cwd.to_owned(),
    }
}

/// The module path a `go.mod` file declares: its `module` directive
/// (`module example.com/m`, or quoted, with a `//` comment after it).
pub fn read_module_path(go_mod: &Path) -> Option<String> {
    let mut text = Vec::new();
    std::fs::File::open(go_mod)
        .ok()?
        .take(GO_MOD_READ)
        .read_to_end(&mut text)
        .ok()?;
    parse_module_path(&String::from_utf8_lossy(&text))
}

/// [`read_module_path`] of a go.mod's text.
pub fn parse_module_path(go_mod: &str) -> Option<String> {
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let Some(rest) = line.strip_prefix("module") else {
            continue;
        };
        if !rest.starts_with([' ', '\t', '"', '`']) {
            continue;
        }
        let path = rest.trim().trim_matches(['"', '`']);
        return (!path.is_empty()).then(|| path.to_string());
    }
    None
}

// ---------------------------------------------------------------------------
// The package a cached executable was built from

/// The most of an executable's `.go.buildinfo` section read.
const BUILD_INFO_READ: usize = 256 * 1024;

/// The import path of the main package a Go executable was built from
/// (`example.com/hello`, `golang.org/x/tools/cmd/stringer`), from the
/// build information the linker writes into its `.go.buildinfo` section
/// (what `go version -m` prints as `path`). `None` for an executable that
/// is not an ELF Go 1.18+ binary, or one built from files named on the
/// command line (`command-line-arguments`). Reads the ELF section headers
/// and the start of that section through `file`, nothing else.
pub fn exe_main_path(file: &std::fs::File) -> Option<String> {
    let data = elf_section(file, b".go.buildinfo", BUILD_INFO_READ)?;
    let path = parse_build_info(&data)?
        .lines()
        .find_map(|l| l.strip_prefix("path\t"))?
        .to_string();
    (path != "command-line-arguments" && !path.is_empty()).then_some(path)
}

/// The start (at most `max` bytes) of the ELF section `name` of `file`.
fn elf_section(file: &std::fs::File, name: &[u8], max: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut ident = [0u8; 64];
    file.read_exact_at(&mut ident, 0).ok()?;
    // 64-bit ELF only (every platform Go caches executables for today
    // but 32-bit ones).
    if &ident[..4] != b"\x7fELF" || ident[4] != 2 {
        return None;
    }
    let big = match ident[5] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let u16_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1]];
        if big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let v: [u8; 4] = b[o..o + 4].try_into().unwrap_or_default();
        if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let u64_at = |b: &[u8], o: usize| {
        let v: [u8; 8] = b[o..o + 8].try_into().unwrap_or_default();
        if big {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        }
    };
    let shoff = u64_at(&ident, 0x28);
    let shentsize = u16_at(&ident, 0x3a) as usize;
    let shnum = u16_at(&ident, 0x3c) as usize;
    let shstrndx = u16_at(&ident, 0x3e) as usize;
    if shentsize < 64 || shnum == 0 || shnum > 4096 || shstrndx >= shnum {
        return None;
    }
    let mut headers = vec![0u8; shentsize * shnum];
    file.read_exact_at(&mut headers, shoff).ok()?;
    let header = |i: usize| &headers[i * shentsize..(i + 1) * shentsize];
    let read = |h: &[u8], limit: usize| -> Option<Vec<u8>> {
        let (offset, size) = (u64_at(h, 24), u64_at(h, 32));
        let mut buf = vec![0u8; usize::try_from(size).ok()?.min(limit)];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    };
    let names = read(header(shstrndx), 1 << 20)?;
    (0..shnum).map(header).find_map(|h| {
        let at = u32_at(h, 0) as usize;
        let end = names.get(at..)?.iter().position(|&b| b == 0)? + at;
        (&names[at..end] == name).then(|| read(h, max)).flatten()
    })
}

/// The module information (`path\t…`, `mod\t…` lines) in the start of a
/// `.go.buildinfo` section, as `debug/buildinfo` decodes it (Go 1.18+:
/// strings inline after the 32-byte header).
fn parse_build_info(data: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let start = (0..data.len().saturating_sub(32))
        .step_by(16)
        .find(|&o| data[o..].starts_with(MAGIC))?;
    let header = &data[start..start + 32];
    if header[15] & 0x2 == 0 {
        return None; // before Go 1.18: pointers into the data segment
    }
    let mut at = start + 32;
    let mut string = || -> Option<&[u8]> {
        let (len, n) = uvarint(data.get(at..)?)?;
        let begin = at + n;
        let end = begin.checked_add(usize::try_from(len).ok()?)?;
        at = end;
        data.get(begin..end)
    };
    let _version = string()?;
    let info = string()?;
    // Framed by 16-byte sentinels (cmd/go's infoStart and infoEnd).
    if info.len() < 33 || info[info.len() - 17] != b'\n' {
        return None;
    }
    Some(String::from_utf8_lossy(&info[16..info.len() - 16]).into_owned())
}

/// An unsigned varint (encoding/binary's), and how many bytes it took.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_is_the_nearest_go_mod_above_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("hello");
        std::fs::create_dir_all(root.join("cmd/hi")).unwrap();
        std::fs::write(
            root.join("go.mod"),
            "// Hello.\n\nmodule example.com/hello // the path\n\ngo 1.24\n",
        )
        .unwrap();
        let m = Module::find(&root.join("cmd/hi")).unwrap();
        assert_eq!(m.root, root);
        assert_eq!(m.path.as_deref(), Some("example.com/hello"));
        assert_eq!(m.label(), "example.com/hello");
        // A nested module is its own.
        std::fs::create_dir_all(root.join("tools")).unwrap();
        std::fs::write(root.join("tools/go.mod"), "module \"example.com/tools\"\n").unwrap();
        let t = Module::find(&root.join("tools")).unwrap();
        assert_eq!(t.path.as_deref(), Some("example.com/tools"));
        // A directory named go.mod is not a module; an unreadable one has
        // no path, and is shown by its directory.
        std::fs::create_dir_all(d.path().join("odd/go.mod")).unwrap();
        assert_eq!(Module::find(&d.path().join("odd")), None);
        std::fs::write(root.join("go.mod"), "go 1.24\n").unwrap();
        let m = Module::find(&root).unwrap();
        assert_eq!(m.path, None);
        assert_eq!(m.label(), root.display().to_string());
    }

    #[test]
    fn module_lines_are_read_as_go_writes_them() {
        assert_eq!(parse_module_path("module m\n").as_deref(), Some("m"));
        assert_eq!(parse_module_path("module\t`a/b`\n").as_deref(), Some("a/b"));
        assert_eq!(
            parse_module_path("modules x\nmodule y").as_deref(),
            Some("y")
        );
        assert_eq!(parse_module_path("// module x\n"), None);
        assert_eq!(parse_module_path("module\n"), None);
    }

    #[test]
    fn build_info_is_decoded_as_debug_buildinfo_does() {
        let info = "path\texample.com/hello\nmod\texample.com/hello\t(devel)\t\n";
        let mut framed = vec![b'x'; 16];
        framed.extend_from_slice(info.as_bytes());
        framed.extend_from_slice(&[b'y'; 16]);
        let mut blob = vec![0u8; 48]; // some bytes before, aligned to 16
        blob.extend_from_slice(b"\xff Go buildinf:");
        blob.extend_from_slice(&[8, 2]);
        blob.extend_from_slice(&[0; 16]);
        blob.extend_from_slice(&[8]);
        blob.extend_from_slice(b"go1.27.3");
        let n = framed.len();
        blob.extend_from_slice(&[(n as u8) | 0x80, (n >> 7) as u8]);
        blob.extend_from_slice(&framed);
        assert_eq!(parse_build_info(&blob).as_deref(), Some(info));
        assert_eq!(uvarint(&[0xac, 0x02]), Some((300, 2)));
        // Cut short, or no magic: nothing.
        assert_eq!(parse_build_info(&blob[..blob.len() - 20]), None);
        assert_eq!(parse_build_info(&[0u8; 100]), None);
        // Not ELF.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x"), b"#!/bin/sh\n").unwrap();
        assert_eq!(
            exe_main_path(&std::fs::File::open(d.path().join("x")).unwrap()),
            None
        );
    }

    #[test]
    fn go_dash_c_changes_the_directory_first() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let cwd = Path::new("/w");
        assert_eq!(go_command_dir(&os(&["build"]), cwd), cwd);
        assert_eq!(
            go_command_dir(&os(&["-C", "sub", "build"]), cwd),
            Path::new("/w/sub")
        );
        assert_eq!(
            go_command_dir(&os(&["-C=/abs", "build"]), cwd),
            Path::new("/abs")
        );
        assert_eq!(
            go_command_dir(&os(&["build", "-C", "x"]), cwd),
            cwd,
            "only first"
        );
    }
}
