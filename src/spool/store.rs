//! Writing one instance durably.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::SpoolError;
use super::meta::{self, MetaFields};
use super::path::relative_path;

/// A received instance, as the receiver hands it to the spool.
pub struct Incoming<'a> {
    pub study_instance_uid: &'a str,
    pub series_instance_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub sop_class_uid: &'a str,
    /// The negotiated transfer syntax the dataset bytes are encoded in.
    pub transfer_syntax: &'a str,
    pub calling_ae: &'a str,
    /// The dataset exactly as received (no file meta group).
    pub dataset: &'a [u8],
}

/// Where an instance goes, decided before anything is written ([`Spool::plan`]).
#[derive(Debug, Clone)]
pub struct Planned {
    /// The path and size it will have once written.
    pub stored: Stored,
    /// The file meta group that precedes the dataset.
    header: Vec<u8>,
}

#[cfg(fuzzing)]
impl Planned {
    /// The file meta group, preamble included, for the fuzz targets' checks.
    pub fn header(&self) -> &[u8] {
        &self.header
    }
}

/// Where an instance now lives.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Relative to the spool root, with `/` separators: what the index records.
    pub relative_path: String,
    /// Size of the part-10 file.
    pub size_bytes: u64,
}

/// How many series directories the spool remembers. A daemon runs for months and receives
/// thousands of series a day, so the memory of known directories is cleared when it reaches this
/// size: forgetting one only costs its next writer a `mkdir` that finds it already there, and
/// writers still holding the old [`DirSync`] keep their own fsync guarantee.
const KNOWN_DIRS: usize = 4096;

/// The directory under the spool root where every file is written before it is renamed into
/// its series directory. One place for all temporaries: those of writes that a crash
/// interrupted are found there without walking the spool, and removed before the receiver
/// opens ([`Spool::remove_interrupted_writes`]). Hidden, and holding no `.dcm` names, so that
/// [`walk`](super::walk) passes over it.
const WRITING: &str = ".writing";

/// The spool root and what we know about it. Cheap to clone; share one per daemon.
#[derive(Clone)]
pub struct Spool(Arc<Inner>);

struct Inner {
    root: PathBuf,
    /// `root/`[`WRITING`].
    writing: PathBuf,
    /// Series directories already created and made durable, so that the common case (another
    /// instance of a known series) costs no directory checks; each with the fsyncs its writers
    /// share. Bounded by [`KNOWN_DIRS`].
    dirs: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
    /// Makes temporary names unique between concurrent writers.
    counter: AtomicU64,
}

impl Spool {
    /// Opens (creating if needed) the spool at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let root = root.into();
        if !root.is_dir() {
            fs::create_dir_all(&root).map_err(|e| SpoolError::io(&root, e))?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        // `WRITING` is made by the first write, not here: a spool opened only to be read (by
        // `brainaged reindex`, say) may sit on a read-only filesystem.
        Ok(Spool(Arc::new(Inner {
            writing: root.join(WRITING),
            root,
            dirs: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        })))
    }

    /// Removes the temporary files of writes that a crash interrupted (none of them was
    /// acknowledged: a file is renamed into place before its instance is). Returns how many.
    /// Call it only while nothing writes to the spool: `serve` does, before its port opens.
    pub fn remove_interrupted_writes(&self) -> Result<usize, SpoolError> {
        let dir = &self.0.writing;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(SpoolError::io(dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry.map_err(|e| SpoolError::io(dir, e))?.path();
            fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The spool root directory.
    pub fn root(&self) -> &Path {
        &self.0.root
    }

    /// The absolute path of a file the index names by its relative path.
    pub fn path_of(&self, relative: &str) -> PathBuf {
        self.0.root.join(relative)
    }

    /// Writes `inc` durably and returns where it went. Blocking: call it from a blocking thread.
    ///
    /// A second instance with the same UIDs replaces the first atomically (a re-sent instance is
    /// idempotent); readers see either the old or the new file, never a partial one.
    pub fn store(&self, inc: &Incoming<'_>) -> Result<Stored, SpoolError> {
        let planned = self.plan(inc)?;
        self.write(&planned, inc.dataset)?;
        Ok(planned.stored)
    }

    /// Decides where `inc` goes and encodes its file meta group, touching nothing on disk.
    ///
    /// Split from [`write`](Self::write) so that the receiver can index the instance (which
    /// needs the path and size) while its bytes are still on their way to the disk: the two
    /// durable writes, the file's and the database's, then overlap instead of adding up.
    pub fn plan(&self, inc: &Incoming<'_>) -> Result<Planned, SpoolError> {
        for uid in [
            inc.study_instance_uid,
            inc.series_instance_uid,
            inc.sop_instance_uid,
        ] {
            if uid.trim_matches(['\0', ' ']).is_empty() {
                return Err(SpoolError::Missing("a study, series or SOP instance UID"));
            }
        }
        let relative = relative_path(
            inc.study_instance_uid,
            inc.series_instance_uid,
            inc.sop_instance_uid,
        );
        let header = meta::encode(&MetaFields {
            sop_class_uid: inc.sop_class_uid,
            sop_instance_uid: inc.sop_instance_uid,
            transfer_syntax: inc.transfer_syntax,
            source_ae: inc.calling_ae,
        });
        Ok(Planned {
            stored: Stored {
                size_bytes: (header.len() + inc.dataset.len()) as u64,
                relative_path: relative,
            },
            header,
        })
    }

    /// Writes a planned instance durably: under a temporary name in [`WRITING`], data flushed,
    /// renamed into its series directory, then that directory fsynced. Blocking: call it from a
    /// blocking thread (the receiver calls it under `block_in_place`).
    ///
    /// Why a named temporary file and not an unnamed one (`O_TMPFILE`, linked into place after
    /// its flush), which writes the directory once less: on ext4 without a journal the link
    /// raises the file's link count in memory only, and the directory fsync does not write the
    /// file's inode. After a power cut the directory names an inode whose link count on disk is
    /// 0, and `e2fsck` deletes it: tests/power_cut.rs lost 5 of 32 stored files that way.
    /// A temporary file has its name, and a link count of 1, from the start.
    pub fn write(&self, planned: &Planned, dataset: &[u8]) -> Result<(), SpoolError> {
        let target = self.0.root.join(&planned.stored.relative_path);
        let dir = target
            .parent()
            .map(Path::to_path_buf)
            .ok_or(SpoolError::Missing("a parent directory"))?;
        let dir_sync = self.ensure_dir(&dir)?;
        let tmp = self.temporary_name();
        let written = self
            .create_temporary(&tmp)
            .and_then(|file| write_flushed(&file, &[&planned.header[..], dataset]));
        if let Err(e) = rename_into_place(&tmp, &target, written) {
            // The directory may have been removed behind our back: check again next time.
            self.forget_dir(&dir);
            return Err(e);
        }
        dir_sync.after_rename(&dir)
    }

    /// A name in [`WRITING`], unique between the writers of this process (the counter) and of
    /// any other process writing to the spool at the same time (the process ID).
    fn temporary_name(&self) -> PathBuf {
        self.0.writing.join(format!(
            "{}.{}.tmp",
            std::process::id(),
            self.0.counter.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Creates (or truncates: it can only be a crashed writer's leftover) the temporary file
    /// `tmp`, making [`WRITING`] first when it is not there yet (or was removed behind our back).
    fn create_temporary(&self, tmp: &Path) -> std::io::Result<File> {
        let create = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(tmp)
        };
        match create() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                create_writing_dir(&self.0.root, &self.0.writing)?;
                create()
            }
            result => result,
        }
    }

    /// Creates the study and series directories when missing, fsyncing each parent whose
    /// entries changed, so that a durable file is never orphaned by a lost directory entry.
    fn ensure_dir(&self, series_dir: &Path) -> Result<Arc<DirSync>, SpoolError> {
        if let Some(known) = lock(&self.0.dirs).get(series_dir) {
            return Ok(known.clone());
        }
        let mut chain = Vec::new();
        let mut cur = series_dir;
        while cur != self.0.root {
            chain.push(cur.to_path_buf());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        for dir in chain.iter().rev() {
            match fs::create_dir(dir) {
                Ok(()) => {
                    if let Some(parent) = dir.parent() {
                        sync_dir(parent)?;
                    }
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SpoolError::io(dir, e)),
            }
        }
        let mut dirs = lock(&self.0.dirs);
        if dirs.len() >= KNOWN_DIRS && !dirs.contains_key(series_dir) {
            dirs.clear();
        }
        Ok(dirs.entry(series_dir.to_path_buf()).or_default().clone())
    }

    fn forget_dir(&self, dir: &Path) {
        lock(&self.0.dirs).remove(dir);
    }
}

/// The directory fsyncs of one directory, shared between concurrent writers.
///
/// A directory fsync makes durable every entry changed before it started. When several
/// associations write into one series at once, a writer whose rename lands while another
/// writer's fsync is running waits for that fsync to end and then runs one more for everybody
/// who queued meanwhile, instead of each writer paying its own. A lone writer runs its fsync at
/// once, exactly as before.
#[derive(Default)]
struct DirSync {
    state: Mutex<SyncState>,
    finished: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Renames completed in the directory, counted.
    renamed: u64,
    /// The count of renames that a completed fsync has made durable.
    durable: u64,
    /// An fsync of the directory is running.
    running: bool,
}

impl DirSync {
    /// Returns once a directory fsync that started after the caller's rename has
    /// succeeded.
    /// An fsync that fails is reported to the writer who ran it; the writers waiting on it run
    /// their own.
    fn after_rename(&self, dir: &Path) -> Result<(), SpoolError> {
        self.shared(|| sync_dir(dir))
    }

    /// [`after_rename`](Self::after_rename) with the fsync given.
    fn shared(&self, fsync: impl Fn() -> Result<(), SpoolError>) -> Result<(), SpoolError> {
        let mut st = lock(&self.state);
        st.renamed += 1;
        let mine = st.renamed;
        while st.durable < mine {
            if st.running {
                st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.running = true;
            let covers = st.renamed;
            drop(st);
            let result = fsync();
            st = lock(&self.state);
            st.running = false;
            if result.is_ok() {
                st.durable = st.durable.max(covers);
            }
            self.finished.notify_all();
            result?;
        }
        Ok(())
    }
}

/// A poisoned lock only means another writer panicked; the data it guards stays consistent
/// (counters and a cache), so carry on with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `parts` and flushes them. Data (and the size, which fdatasync includes) must be on
/// disk before a link or rename gives the file its final name.
fn write_flushed(mut file: &File, parts: &[&[u8]]) -> std::io::Result<()> {
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_data()
}

/// Renames the temporary file `tmp`, once `written` says its flushed data is there, over
/// `target`; on any failure removes `tmp`, so that no temporary outlives a failed write.
fn rename_into_place(
    tmp: &Path,
    target: &Path,
    written: std::io::Result<()>,
) -> Result<(), SpoolError> {
    let result = written
        .map_err(|e| SpoolError::io(tmp, e))
        .and_then(|()| fs::rename(tmp, target).map_err(|e| SpoolError::io(target, e)));
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Creates `writing` under `root` when missing, its entry made durable.
fn create_writing_dir(root: &Path, writing: &Path) -> std::io::Result<()> {
    match fs::create_dir(writing) {
        Ok(()) => File::open(root)?.sync_all(),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a directory's entries (a new file name, a rename) durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Runs `writers` threads that "rename" at the same moment and then wait for durability
    /// through `sync`, whose fsync takes 20 ms and fails on the calls listed in `failing`.
    /// Returns how many fsyncs ran and each writer's result.
    fn concurrent_writers(writers: usize, failing: &[usize]) -> (usize, Vec<bool>) {
        let sync = DirSync::default();
        let calls = AtomicUsize::new(0);
        let barrier = Barrier::new(writers);
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..writers)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        sync.shared(|| {
                            let call = calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            match failing.contains(&call) {
                                true => Err(SpoolError::Missing("a disk")),
                                false => Ok(()),
                            }
                        })
                        .is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        (calls.load(Ordering::SeqCst), results)
    }

    /// An instance of series 1.2.3, its dataset not parsed by the spool.
    fn instance<'a>(sop_instance_uid: &'a str, dataset: &'a [u8]) -> Incoming<'a> {
        Incoming {
            study_instance_uid: "1.2",
            series_instance_uid: "1.2.3",
            sop_instance_uid,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.4",
            transfer_syntax: "1.2.840.10008.1.2.1",
            calling_ae: "SCU",
            dataset,
        }
    }

    #[test]
    fn concurrent_renames_share_directory_fsyncs() {
        let (fsyncs, results) = concurrent_writers(8, &[]);
        assert!(results.iter().all(|ok| *ok));
        // The first writer's fsync, then at most one more for all who renamed meanwhile (a
        // writer that reached the lock late may need a third).
        assert!(fsyncs < 8, "{fsyncs} fsyncs for 8 writers");
    }

    #[test]
    fn a_failed_fsync_fails_only_its_runner_and_the_others_retry() {
        let (fsyncs, results) = concurrent_writers(4, &[0]);
        assert_eq!(results.iter().filter(|ok| !**ok).count(), 1, "{results:?}");
        assert!(fsyncs >= 2);
    }

    #[test]
    fn the_memory_of_known_directories_is_bounded() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let first = spool.store(&instance("1.2.3.4", b"first")).unwrap();
        let series_dir = spool
            .path_of(&first.relative_path)
            .parent()
            .unwrap()
            .to_path_buf();
        for i in 0..KNOWN_DIRS {
            spool
                .ensure_dir(&root.path().join("other").join(i.to_string()))
                .unwrap();
        }
        let known = lock(&spool.0.dirs);
        assert!(
            known.len() <= KNOWN_DIRS,
            "{} directories remembered",
            known.len()
        );
        assert!(!known.contains_key(&series_dir));
        drop(known);
        // The forgotten series directory is found again and written into as before.
        let second = spool.store(&instance("1.2.3.5", b"second")).unwrap();
        for stored in [first, second] {
            assert!(spool.path_of(&stored.relative_path).is_file());
        }
    }

    #[test]
    fn a_resent_instance_replaces_the_file_and_leaves_no_temporary() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let first = spool.store(&instance("1.2.3.4", b"first dataset")).unwrap();
        let second = spool
            .store(&instance("1.2.3.4", b"second, longer dataset"))
            .unwrap();
        assert_eq!(first.relative_path, second.relative_path);
        let path = spool.path_of(&second.relative_path);
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.ends_with(b"second, longer dataset"));
        assert_eq!(bytes.len() as u64, second.size_bytes);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(fs::read_dir(root.path().join(WRITING)).unwrap().count(), 0);
    }

    #[test]
    fn interrupted_writes_are_removed_and_a_lost_writing_directory_comes_back() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        assert_eq!(
            spool.remove_interrupted_writes().unwrap(),
            0,
            "nothing written yet"
        );
        let writing = root.path().join(WRITING);
        fs::create_dir(&writing).unwrap();
        for name in ["4242.0.tmp", "4242.1.tmp"] {
            fs::write(writing.join(name), b"half a file").unwrap();
        }
        assert_eq!(spool.remove_interrupted_writes().unwrap(), 2);
        assert_eq!(fs::read_dir(&writing).unwrap().count(), 0);
        assert_eq!(spool.remove_interrupted_writes().unwrap(), 0);

        fs::remove_dir(&writing).unwrap();
        let stored = spool
            .store(&instance(
                "1.2.3.4",
                b"written after the directory came back",
            ))
            .unwrap();
        assert!(spool.path_of(&stored.relative_path).is_file());
        assert!(writing.is_dir());
        // The spool's listing skips the (empty) directory of temporaries.
        let listed: Vec<_> = crate::spool::walk(root.path())
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(listed, vec![spool.path_of(&stored.relative_path)]);
    }

    #[test]
    fn a_lone_writer_runs_its_own_fsync() {
        let (fsyncs, results) = concurrent_writers(1, &[]);
        assert_eq!((fsyncs, results), (1, vec![true]));
    }
}
