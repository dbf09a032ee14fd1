//! Writing result files so that a kill at any moment leaves the old file or the new one,
//! never half of one.

use std::path::{Path, PathBuf};

/// Write `bytes` to a temporary file beside `path`, then rename it over `path` (atomic on one
/// file system).
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    let tmp = temporary(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `dir/name.ext` → `dir/name.ext.tmp`.
pub fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("front.json");
        std::fs::write(&path, "old").unwrap();
        super::write_atomic(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(super::temporary(&path), dir.path().join("front.json.tmp"));
    }
}
