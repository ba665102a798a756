//! The stream writer and the restore against each other, in-process (the e2e tests go through
//! the CLI): checksum lists in chunks, long names, directory metadata, bounds, links that lead
//! outside a tree.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::manifest::{self, Kind, Manifest, MountRecord};
use super::restore::{self, Plan, Target};
use super::swap::Place;
use super::writer;

fn manifest() -> Manifest {
    Manifest {
        format: manifest::FORMAT,
        app: "demo".into(),
        release: Some(1),
        created_at: 0,
        berth_version: "test".into(),
        mounts: vec![MountRecord {
            id: manifest::mount_id(0),
            source: "app-dir:uploads".into(),
            target: "/data".into(),
            kind: Kind::Bind,
            host: "/x".into(),
            root: Default::default(),
            files: 0,
            bytes: 0,
        }],
    }
}

fn stream_of(dir: &Path) -> Vec<u8> {
    let mut stream = Vec::new();
    writer::write(manifest(), &[dir.to_path_buf()], &mut stream, &crate::output::Reporter::capture())
        .unwrap();
    stream
}

fn restore_into(stream: &[u8], parent: &Path) -> Result<Vec<restore::Restored>, super::BackupError> {
    let place = Place::Sibling { parent: parent.to_path_buf(), name: "uploads".into() };
    let plan = Plan { targets: vec![Target { id: "m0".into(), place }], stamp: "S".into() };
    restore::restore(stream, &plan)
}

/// Names of the stream's members, in order.
fn members(stream: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(stream);
    archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

#[test]
fn many_files_long_names_and_directory_modes_come_back() {
    let src = tempfile::tempdir().unwrap();
    let files = manifest::SUMS_FILES * 2 + 10;
    for i in 0..files {
        let dir = src.path().join(format!("d{}", i % 7));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}")), format!("content {i}\n").repeat(i % 5)).unwrap();
    }
    let long = src.path().join("l".repeat(120)).join("n".repeat(150));
    fs::create_dir_all(long.parent().unwrap()).unwrap();
    fs::write(&long, "deep").unwrap();
    fs::set_permissions(src.path().join("d3"), fs::Permissions::from_mode(0o750)).unwrap();
    let stream = stream_of(src.path());

    let lists = members(&stream).iter().filter(|m| m.starts_with(manifest::SUMS_PREFIX)).count();
    assert_eq!(lists, files.div_ceil(manifest::SUMS_FILES), "lists of at most SUMS_FILES files");
    let dst = tempfile::tempdir().unwrap();
    let done = restore_into(&stream, dst.path()).unwrap();
    assert_eq!(done[0].files, files as u64 + 1);
    let back = dst.path().join("uploads");
    let rel = long.strip_prefix(src.path()).unwrap();
    assert_eq!(fs::read_to_string(back.join(rel)).unwrap(), "deep");
    assert_eq!(fs::read(back.join("d6/f13")).unwrap(), fs::read(src.path().join("d6/f13")).unwrap());
    let mode = |root: &Path| fs::metadata(root.join("d3")).unwrap().mode() & 0o7777;
    assert_eq!(mode(&back), 0o750);
    let mtime = |root: &Path| fs::metadata(root.join("d1")).unwrap().mtime();
    assert_eq!(mtime(&back), mtime(src.path()), "a directory keeps its mtime once its files are in");
}

#[test]
fn files_beyond_a_list_without_one_are_refused() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..=manifest::SUMS_FILES {
        fs::write(src.path().join(format!("f{i:05}")), "x").unwrap();
    }
    let stream = stream_of(src.path());
    // Drop the first checksum list: the restore may not hold more than a list's worth.
    let mut archive = tar::Archive::new(&stream[..]);
    let mut crafted = tar::Builder::new(Vec::new());
    let mut dropped = false;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().into_owned();
        if !dropped && name.starts_with(manifest::SUMS_PREFIX) {
            dropped = true;
            continue;
        }
        let mut header = entry.header().clone();
        crafted.append_data(&mut header, &name, &mut entry).unwrap();
    }
    let crafted = crafted.into_inner().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let err = restore_into(&crafted, dst.path()).unwrap_err().to_string();
    assert!(err.contains("without a checksum list"), "{err}");
    assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0, "no staging left");
}

#[test]
fn links_to_outside_the_tree_are_kept_as_links_and_never_read() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "host secret\n").unwrap();
    let src = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), src.path().join("to-dir")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), src.path().join("to-file")).unwrap();
    let stream = stream_of(src.path());
    assert!(!stream.windows(b"host secret".len()).any(|w| w == b"host secret"));
    let names = members(&stream);
    assert!(names.iter().any(|n| n.ends_with("m0/to-dir")), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("to-dir/")), "{names:?}");
}

#[test]
fn a_mount_root_that_is_a_symlink_is_refused() {
    let real = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let link = parent.path().join("uploads");
    std::os::unix::fs::symlink(real.path(), &link).unwrap();
    let result = writer::write(manifest(), &[link], &mut Vec::new(), &crate::output::Reporter::capture());
    assert!(result.is_err());
}
