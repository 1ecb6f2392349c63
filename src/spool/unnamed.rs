//! Unnamed files (`O_TMPFILE`): written and flushed before they have a name, then linked into
//! place.
//!
//! Why: a file created under a temporary name costs the directory twice. Making the file's data
//! durable also writes the directory block holding the temporary entry (ext4 without a journal
//! syncs a new file's parent in the fdatasync), and the rename then changes the directory again
//! for the directory fsync. An unnamed file has no entry until it is linked, so its fdatasync
//! writes only the file, and the directory is written once, by the fsync after the link
//! (measured with `/proc/diskstats`: 7.7 → 6.05 device writes per spool file; a block trace
//! counts 1 data write, 3 metadata writes and 2 flushes per unnamed file). Readers still never
//! see a partial file: the name appears only after the data is on disk, as with the rename.
//!
//! Not every filesystem supports `O_TMPFILE`, and linking an open file by descriptor
//! (`AT_EMPTY_PATH`) needs `CAP_DAC_READ_SEARCH` on many kernels (recent ones relax this for a
//! file the caller opened itself); the `/proc/self/fd` route needs `/proc` of the same mount
//! namespace. [`probe`] finds out once, when the spool opens, which route works; without one the
//! spool uses temporary names.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How an unnamed file gets its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkVia {
    /// `linkat(fd, "", …, AT_EMPTY_PATH)`.
    EmptyPath,
    /// `linkat(AT_FDCWD, "/proc/self/fd/N", …, AT_SYMLINK_FOLLOW)`.
    ProcFd,
}

/// Which route links an unnamed file created in `dir` into `dir`, if any: tried with a real
/// file and a real (hidden, removed again) name.
pub(super) fn probe(dir: &Path) -> Option<LinkVia> {
    let file = create(dir).ok()?;
    let name = dir.join(format!(".probe.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&name);
    let via = [LinkVia::EmptyPath, LinkVia::ProcFd]
        .into_iter()
        .find(|via| link(&file, &name, *via).is_ok())?;
    let _ = fs::remove_file(&name);
    Some(via)
}

/// An unnamed regular file in `dir`'s filesystem, open for writing.
pub(super) fn create(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

/// Gives `file` the name `to`. Fails with `AlreadyExists` when `to` exists: a link never
/// replaces a file.
pub(super) fn link(file: &File, to: &Path, via: LinkVia) -> io::Result<()> {
    let to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call, and the descriptor
    // belongs to `file`, which is borrowed for the call.
    let rc = match via {
        LinkVia::EmptyPath => unsafe {
            libc::linkat(
                file.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        },
        LinkVia::ProcFd => {
            let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
            unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            }
        }
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_linked_unnamed_file_has_its_bytes_under_the_new_name() {
        let dir = tempfile::tempdir().unwrap();
        // ext4, xfs, btrfs and tmpfs all support it: a `None` here would be a broken probe.
        let via = probe(dir.path()).expect("unnamed files on the test filesystem");
        let mut file = create(dir.path()).unwrap();
        file.write_all(b"part-10 bytes").unwrap();
        let name = dir.path().join("1.2.3.dcm");
        link(&file, &name, via).unwrap();
        assert_eq!(fs::read(&name).unwrap(), b"part-10 bytes");
        let again = link(&file, &name, via).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        // The probe left nothing behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
