//! Writing one instance durably.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// Where an instance now lives.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Relative to the spool root, with `/` separators: what the index records.
    pub relative_path: String,
    /// Size of the part-10 file.
    pub size_bytes: u64,
}

/// The spool root and what we know about it. Cheap to clone; share one per daemon.
#[derive(Clone)]
pub struct Spool(Arc<Inner>);

struct Inner {
    root: PathBuf,
    /// Series directories already created and made durable, so that the common case (another
    /// instance of a known series) costs no directory checks.
    durable_dirs: Mutex<HashSet<PathBuf>>,
    /// Makes temporary names unique between concurrent writers of the same SOP instance.
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
        Ok(Spool(Arc::new(Inner {
            root,
            durable_dirs: Mutex::new(HashSet::new()),
            counter: AtomicU64::new(0),
        })))
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

    /// Writes a planned instance durably: temporary file, fdatasync, rename, directory fsync.
    /// Blocking: call it from a blocking thread.
    pub fn write(&self, planned: &Planned, dataset: &[u8]) -> Result<(), SpoolError> {
        let target = self.0.root.join(&planned.stored.relative_path);
        let dir = target
            .parent()
            .map(Path::to_path_buf)
            .ok_or(SpoolError::Missing("a parent directory"))?;
        self.ensure_dir(&dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.{}.tmp",
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id(),
            self.0.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let result = write_and_rename(&tmp, &target, &planned.header, dataset);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
            // The directory may have been removed behind our back: check again next time.
            self.forget_dir(&dir);
        }
        result?;
        sync_dir(&dir)
    }

    /// Creates the study and series directories when missing, fsyncing each parent whose
    /// entries changed, so that a durable file is never orphaned by a lost directory entry.
    fn ensure_dir(&self, series_dir: &Path) -> Result<(), SpoolError> {
        if self.known(series_dir) {
            return Ok(());
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
        if let Ok(mut set) = self.0.durable_dirs.lock() {
            set.insert(series_dir.to_path_buf());
        }
        Ok(())
    }

    fn known(&self, dir: &Path) -> bool {
        self.0
            .durable_dirs
            .lock()
            .map(|set| set.contains(dir))
            .unwrap_or(false)
    }

    fn forget_dir(&self, dir: &Path) {
        if let Ok(mut set) = self.0.durable_dirs.lock() {
            set.remove(dir);
        }
    }
}

/// Temporary file → data on disk → atomic rename. The caller fsyncs the directory afterwards.
fn write_and_rename(
    tmp: &Path,
    target: &Path,
    header: &[u8],
    dataset: &[u8],
) -> Result<(), SpoolError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| SpoolError::io(tmp, e))?;
    file.write_all(header)
        .and_then(|()| file.write_all(dataset))
        .map_err(|e| SpoolError::io(tmp, e))?;
    // Data (and the size, which fdatasync includes) must be on disk before the rename makes
    // the file visible under its final name.
    file.sync_data().map_err(|e| SpoolError::io(tmp, e))?;
    drop(file);
    fs::rename(tmp, target).map_err(|e| SpoolError::io(target, e))
}

/// Makes a directory's entries (a new file name, a rename) durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io(dir, e))
}
