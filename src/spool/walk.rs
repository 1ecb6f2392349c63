//! Listing the instances in a spool, for `brainaged reindex`.

use std::path::{Path, PathBuf};

use super::SpoolError;

/// Every spool file under `root` (`*.dcm`), skipping the temporary files of interrupted writes
/// (hidden `.…tmp` names), in no particular order.
pub fn walk(root: &Path) -> impl Iterator<Item = Result<PathBuf, SpoolError>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|entry| match entry {
            Ok(e) => {
                let name = e.file_name().to_string_lossy();
                let wanted =
                    e.file_type().is_file() && name.ends_with(".dcm") && !name.starts_with('.');
                wanted.then(|| Ok(e.into_path()))
            }
            Err(err) => {
                let path = err.path().map(Path::to_path_buf).unwrap_or_default();
                let source = err
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                Some(Err(SpoolError::io(path, source)))
            }
        })
}
