//! A power cut right after `Spool::store` returns loses nothing, on the filesystems a site puts
//! its spool on: ext4 with and without a journal, and XFS; nor does one right after the
//! converter has answered for a conversion, which the daemon then records.
//!
//! kill -9 (tests/ingest_durability.rs) cannot show this: the kernel still holds the page cache
//! and writes it back later. A power cut loses whatever the spool's fsyncs did not send to the
//! device. Each test makes a filesystem in an image file and mounts it through a loop device. It
//! stores instances into a spool there, then copies the image while the filesystem is still
//! mounted: the copy holds exactly what the device had received, which is what a disk would
//! hold after the power went. The copy is then checked the way a machine checks its disks at
//! boot (`e2fsck -p`; XFS replays its log when mounted), mounted, and every stored file must be
//! there with its bytes.
//!
//! Needs root (mount, loop devices), as the test machines run it, and e2fsprogs and xfsprogs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use brainaged::convert::ConvertOptions;
use brainaged::spool::{Incoming, Spool};
use brainaged::tracker::convert_job::{self, Request};

#[derive(Clone, Copy, Debug)]
enum Fs {
    Ext4NoJournal,
    Ext4,
    Xfs,
}

/// Runs `program` and returns its exit code, panicking with its output when it cannot start.
fn run(program: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (apt: e2fsprogs, xfsprogs): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn run_ok(program: &str, args: &[&str]) {
    let (code, text) = run(program, args);
    assert_eq!(code, 0, "{program} {args:?} failed: {text}");
}

/// A loop mount, unmounted when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Mounted {
    fn new(image: &Path, at: &Path) -> Self {
        fs::create_dir_all(at).unwrap();
        run_ok(
            "mount",
            &["-o", "loop", image.to_str().unwrap(), at.to_str().unwrap()],
        );
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run("umount", &[self.0.to_str().unwrap()]);
    }
}

fn make_filesystem(fs_kind: Fs, image: &Path) {
    let (size, program, args): (u64, &str, &[&str]) = match fs_kind {
        Fs::Ext4NoJournal => (64 << 20, "mkfs.ext4", &["-q", "-F", "-O", "^has_journal"]),
        Fs::Ext4 => (64 << 20, "mkfs.ext4", &["-q", "-F"]),
        // mkfs.xfs refuses filesystems under 300 MiB; the image file stays sparse.
        Fs::Xfs => (320 << 20, "mkfs.xfs", &["-q", "-f"]),
    };
    fs::File::create(image).unwrap().set_len(size).unwrap();
    let mut all = args.to_vec();
    all.push(image.to_str().unwrap());
    run_ok(program, &all);
}

/// Distinct, incompressible-looking bytes for instance `n`, 20–60 KB like MR slices.
fn dataset(n: u64) -> Vec<u8> {
    let len = 20_000 + (n * 7919 % 40_000) as usize;
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Stores two studies of two series of eight instances, then re-sends one instance with other
/// bytes, as the receiver would. Returns each file's relative path and its bytes as written.
fn store_instances(spool: &Spool) -> Vec<(String, Vec<u8>)> {
    let mut stored = Vec::new();
    let mut n = 0;
    for study in 1..=2 {
        for series in 1..=2 {
            for instance in 1..=8 {
                n += 1;
                let sop = format!("1.2.826.0.1.{study}.{series}.{instance}");
                stored.push(store_one(spool, study, series, &sop, &dataset(n)));
            }
        }
    }
    let resent = store_one(spool, 1, 1, "1.2.826.0.1.1.1.1", &dataset(1000));
    stored.retain(|(path, _)| *path != resent.0);
    stored.push(resent);
    stored
}

fn store_one(spool: &Spool, study: u32, series: u32, sop: &str, data: &[u8]) -> (String, Vec<u8>) {
    let study_uid = format!("1.2.826.0.1.{study}");
    let series_uid = format!("1.2.826.0.1.{study}.{series}");
    let stored = spool
        .store(&Incoming {
            study_instance_uid: &study_uid,
            series_instance_uid: &series_uid,
            sop_instance_uid: sop,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.4",
            transfer_syntax: "1.2.840.10008.1.2.1",
            calling_ae: "SCANNER1",
            dataset: data,
        })
        .expect("store");
    let bytes = fs::read(spool.path_of(&stored.relative_path)).unwrap();
    assert!(bytes.ends_with(data));
    (stored.relative_path, bytes)
}

/// What the device holds after the power went, checked as at boot and mounted at `at`.
fn after_power_cut(fs_kind: Fs, snapshot: &Path, at: &Path) -> Mounted {
    if !matches!(fs_kind, Fs::Xfs) {
        // 0: clean, 1: errors corrected (expected without a journal); more: not repairable.
        let (code, text) = run("e2fsck", &["-p", snapshot.to_str().unwrap()]);
        assert!(
            code <= 1,
            "e2fsck -p exit {code} after the power cut: {text}"
        );
        eprintln!("{fs_kind:?}: e2fsck -p exit {code}: {}", text.trim());
    }
    Mounted::new(snapshot, at)
}

fn assert_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test mounts loop devices: run it as root (the test machines do)"
    );
}

/// The power goes now: the device holds what the image file holds.
fn cut_power(image: &Path, snapshot: &Path) {
    run_ok(
        "cp",
        &[
            "--sparse=always",
            image.to_str().unwrap(),
            snapshot.to_str().unwrap(),
        ],
    );
}

fn power_cut_keeps_every_stored_instance(fs_kind: Fs) {
    assert_root();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.img");
    let snapshot = work.path().join("after-power-cut.img");
    make_filesystem(fs_kind, &image);

    let live = Mounted::new(&image, &work.path().join("live"));
    let spool = Spool::open(live.0.join("spool")).expect("open spool");
    let stored = store_instances(&spool);
    cut_power(&image, &snapshot);
    drop(live);

    let after = after_power_cut(fs_kind, &snapshot, &work.path().join("after"));
    let root = after.0.join("spool");
    let lost: Vec<_> = stored
        .iter()
        .filter(|(path, bytes)| fs::read(root.join(path)).ok().as_ref() != Some(bytes))
        .map(|(path, _)| path.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "{fs_kind:?}: {} of {} stored instances lost or changed by the power cut: {lost:?}",
        lost.len(),
        stored.len()
    );
    // What `brainaged reindex` would rebuild the index from: exactly the stored files.
    let mut listed: Vec<PathBuf> = brainaged::spool::walk(&root).map(|p| p.unwrap()).collect();
    let mut expected: Vec<PathBuf> = stored.iter().map(|(path, _)| root.join(path)).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "{fs_kind:?}: the spool lists other files");
}

#[test]
fn ext4_without_a_journal_keeps_every_stored_instance() {
    power_cut_keeps_every_stored_instance(Fs::Ext4NoJournal);
}

#[test]
fn ext4_keeps_every_stored_instance() {
    power_cut_keeps_every_stored_instance(Fs::Ext4);
}

#[test]
fn xfs_keeps_every_stored_instance() {
    power_cut_keeps_every_stored_instance(Fs::Xfs);
}

/// Every file a conversion's records name is on the device, whole, once the converter has
/// answered: the daemon records the conversion then, and later stages read what it names.
#[test]
fn a_conversion_answered_for_survives_a_power_cut() {
    assert_root();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.img");
    let snapshot = work.path().join("after-power-cut.img");
    make_filesystem(Fs::Ext4, &image);

    let live = Mounted::new(&image, &work.path().join("live"));
    let request = Request {
        paths: common::dicom_files(&common::dicom_folder("ge-dwi-tensor-r2")),
        out_dir: live.0.join("derived").join("series").join("v1"),
        options: ConvertOptions::default(),
    };
    let converted = convert_job::convert_here(&request).expect("converted");
    let named: Vec<&str> = converted.records.iter().flat_map(|r| r.files()).collect();
    assert!(
        named.len() >= 4,
        "a DWI volume with its sidecar, bval and bvec"
    );
    let written: Vec<(PathBuf, Vec<u8>)> = named
        .iter()
        .map(|p| {
            let path = Path::new(p);
            let relative = path.strip_prefix(&live.0).unwrap().to_path_buf();
            (relative, fs::read(path).unwrap())
        })
        .collect();
    cut_power(&image, &snapshot);
    drop(live);

    let after = after_power_cut(Fs::Ext4, &snapshot, &work.path().join("after"));
    let lost: Vec<_> = written
        .iter()
        .filter(|(path, bytes)| fs::read(after.0.join(path)).ok().as_ref() != Some(bytes))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} written files lost or changed by the power cut: {lost:?}",
        lost.len(),
        written.len()
    );
}
