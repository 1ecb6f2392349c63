//! A tmpfs of a chosen size: a real filesystem that fills up, for the disk-full tests. Mounting
//! needs root, as the test machines run the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test and unmounted when dropped, even when the test fails.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "this test mounts a tmpfs to fill a real filesystem: run it as root (the test machines do)"
        );
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(status.success(), "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
