//! Where backups are kept: the backup target. Today a directory (`SALVAGE_BACKUP_DIR`);
//! everything above this module goes through [`Storage`] by key (`<store>/<id>/<file>`),
//! so another target (an S3-compatible bucket) is another variant here, not a change to
//! the backup or restore code.
//!
//! A file is written under a temporary name and renamed into place once complete and
//! flushed to disk; a backup's manifest is written last, so a backup without its
//! manifest is incomplete whatever files it holds.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::native::HashingWriter;

/// A backup target.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Files under a local (or mounted) directory.
    Directory(PathBuf),
}

/// A file being written to the target; [`PendingFile::commit`] puts it in place.
pub struct PendingFile {
    writer: HashingWriter<BufWriter<File>>,
    partial: PathBuf,
    path: PathBuf,
}

impl PendingFile {
    /// Flushes the file to disk, renames it to its key and returns its size and SHA-256.
    pub fn commit(self) -> io::Result<(u64, String)> {
        let (buffered, size, sha256) = self.writer.finish();
        let file = buffered.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.partial, &self.path)?;
        Ok((size, sha256))
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl Storage {
    /// Where it is, for the page and the history ("/var/backups/salvage").
    pub fn describe(&self) -> String {
        match self {
            Storage::Directory(dir) => dir.display().to_string(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        match self {
            Storage::Directory(dir) => dir.join(key),
        }
    }

    /// The local path of `key`, for tools that read a file themselves (`pg_restore`).
    pub fn local_path(&self, key: &str) -> PathBuf {
        self.path(key)
    }

    /// Starts writing `key` (its folders are made as needed).
    pub fn create(&self, key: &str) -> io::Result<PendingFile> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let partial = partial_name(&path);
        let file = File::create(&partial)?;
        Ok(PendingFile {
            writer: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            partial,
            path,
        })
    }

    /// Writes `bytes` as `key` in one go (the manifest: its presence commits a backup).
    pub fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.create(key)?;
        file.write_all(bytes)?;
        file.commit()?;
        Ok(())
    }

    /// Reads `key`.
    pub fn open(&self, key: &str) -> io::Result<BufReader<File>> {
        Ok(BufReader::with_capacity(
            1 << 20,
            File::open(self.path(key))?,
        ))
    }

    /// The whole of `key`, for small files (the manifest).
    pub fn read(&self, key: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(key)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    /// Deletes every file under `prefix` (a backup's folder). Deleting what is not there
    /// is not an error.
    pub fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.path(prefix)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Checks that the target can be written: made if missing, and a probe file written
    /// and removed. A backup fails here, before it takes any snapshot.
    pub fn check_writable(&self) -> io::Result<()> {
        self.put(".salvage-write-probe", b"ok")?;
        fs::remove_file(self.path(".salvage-write-probe"))
    }
}

fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_visible_under_its_key_only_once_committed() {
        let dir = std::env::temp_dir().join(format!("salvage-storage-{}", uuid::Uuid::new_v4()));
        let storage = Storage::Directory(dir.clone());
        let mut file = storage.create("postgres/1/postgres.dump").unwrap();
        file.write_all(b"dump").unwrap();
        assert!(!storage.exists("postgres/1/postgres.dump"));
        let (size, _) = file.commit().unwrap();
        assert_eq!(size, 4);
        assert_eq!(storage.read("postgres/1/postgres.dump").unwrap(), b"dump");
        storage.delete_prefix("postgres/1").unwrap();
        assert!(!storage.exists("postgres/1/postgres.dump"));
        storage.delete_prefix("postgres/1").unwrap();
        fs::remove_dir_all(dir).unwrap();
    }
}
