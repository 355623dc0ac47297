//! The data directory's file conventions, shared by the log and the checkpoints: files named by
//! a 20-digit position and an extension, and the directory sync that makes a creation, rename
//! or removal durable.

use std::fs::File;
use std::path::{Path, PathBuf};

/// `<dir>/<seq, 20 digits>.<extension>`.
pub(crate) fn numbered(dir: &Path, seq: u64, extension: &str) -> PathBuf {
    dir.join(format!("{seq:020}.{extension}"))
}

/// The files of `dir` named `<number>.<extension>`, by number; none when `dir` does not exist.
pub(crate) fn listed(dir: &Path, extension: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(extension) {
            continue;
        }
        if let Some(seq) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
        {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a file's creation, rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
