//! The metrics file, written the way node_exporter's textfile collector
//! needs: a temp file in the same folder, then a rename over the target, so
//! a scrape never reads half a file.

use std::io::Write as _;
use std::path::Path;

use super::MetricsError;

/// Write `text` to `path` atomically (same-folder temp file + rename).
/// The file is readable by others (0644 on Unix): the collector usually
/// runs as another user.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), MetricsError> {
    let fail = |source| MetricsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".apisync-metrics-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(fail)?;
    temp.write_all(text.as_bytes()).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let readable = std::fs::Permissions::from_mode(0o644);
        temp.as_file().set_permissions(readable).map_err(fail)?;
    }
    temp.persist(path).map_err(|err| fail(err.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apisync.prom");
        std::fs::write(&path, "old\n").unwrap();
        write_atomically(&path, "new 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new 1\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("apisync.prom")]);
    }

    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("apisync.prom");
        let err = write_atomically(&path, "x 1\n").unwrap_err().to_string();
        assert!(err.contains("cannot write the metrics file"), "{err}");
        assert!(err.contains("no-such-dir"), "{err}");
    }
}
