//! Where backups are kept: the backup target, a directory (`SALVAGE_BACKUP_DIR`) or an
//! S3-compatible bucket (`SALVAGE_BACKUP_URL=s3://bucket/prefix`, through `object_store`).
//! Everything above this module goes through [`Storage`] by key (`<store>/<id>/<file>`).
//!
//! A file is written under a temporary name (a bucket's files are staged on local disk)
//! and put in place only once complete and flushed; a backup's manifest is written last,
//! so a backup without its manifest is incomplete whatever files it holds.
//!
//! [`Storage::create`] and [`Storage::open`] are blocking (they run on the blocking
//! threads that count, compress and hash); the rest is async.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

use super::encryption::Encryption;
use super::native::HashingWriter;

/// A backup target.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Files under a local (or mounted) directory.
    Directory(PathBuf),
    /// Objects in an S3-compatible bucket.
    Bucket(Bucket),
}

/// An S3-compatible bucket and the prefix backups go under.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix`, for people (never credentials).
    url: String,
    /// `prefix/` (or empty).
    prefix: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

/// Why `SALVAGE_BACKUP_URL` names no bucket Salvage can use.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("not a URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("use s3://bucket/prefix")]
    Shape,
    #[error("{key}: {message}")]
    Option { key: String, message: String },
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

impl Bucket {
    /// The bucket of `url` (`s3://bucket/prefix`) with `options` (`aws_endpoint`,
    /// `aws_access_key_id`, …, as `object_store` names them) over what the environment
    /// gives (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`). Connects to nothing yet.
    pub fn new(url: &str, options: &[(&str, &str)]) -> Result<Self, BucketError> {
        let parsed = url::Url::parse(url)?;
        if parsed.scheme() != "s3" || parsed.host_str().is_none_or(str::is_empty) {
            return Err(BucketError::Shape);
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url);
        for (key, value) in options {
            let key: object_store::aws::AmazonS3ConfigKey =
                key.parse()
                    .map_err(|e: object_store::Error| BucketError::Option {
                        key: (*key).to_owned(),
                        message: e.to_string(),
                    })?;
            builder = builder.with_config(key, *value);
        }
        let store = builder.build()?;
        let prefix = parsed.path().trim_matches('/');
        Ok(Self {
            store: Arc::new(store),
            url: format!("s3://{}/{prefix}", parsed.host_str().unwrap_or_default()),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.prefix))
    }

    /// Uploads the local file `from` as `key`, in parts.
    async fn upload(&self, from: &Path, key: &str) -> io::Result<()> {
        let upload = self
            .store
            .put_multipart(&self.path(key))
            .await
            .map_err(io::Error::other)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut file = tokio::fs::File::open(from).await?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await?;
            if read == 0 {
                break;
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(io::Error::other)?;
            writer.write(&buffer[..read]);
        }
        writer.finish().await.map_err(io::Error::other)?;
        Ok(())
    }

    /// Downloads `key` to a new staged file.
    async fn download(&self, key: &str) -> io::Result<Staged> {
        let (staged, file) = staged_file("download")?;
        let mut stream = self
            .store
            .get(&self.path(key))
            .await
            .map_err(not_found)?
            .into_stream();
        let mut file = tokio::fs::File::from_std(file);
        while let Some(chunk) = stream.try_next().await.map_err(io::Error::other)? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        Ok(staged)
    }
}

fn not_found(error: object_store::Error) -> io::Error {
    match error {
        object_store::Error::NotFound { .. } => {
            io::Error::new(io::ErrorKind::NotFound, "not found")
        }
        other => io::Error::other(other),
    }
}

/// This process's staging directory, where files wait on their way to and from a
/// bucket and where a restore keeps the copy it checked: made on first use under the
/// system's temporary directory (`TMPDIR`), mode 0700, a new one for each process.
fn private_staging() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut made = DIR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = made.as_ref().filter(|dir| dir.is_dir()) {
        return Ok(dir.clone());
    }
    let dir = std::env::temp_dir().join(format!(
        "salvage-staging-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    fs::DirBuilder::new().mode(0o700).create(&dir)?;
    *made = Some(dir.clone());
    Ok(dir)
}

/// A new file in the private staging directory, mode 0600, deleted when dropped.
fn staged_file(what: &str) -> io::Result<(Staged, File)> {
    let path = staged_path(what)?;
    let file = new_private_file(&path)?;
    Ok((Staged(path), file))
}

/// A new name in the private staging directory.
fn staged_path(what: &str) -> io::Result<PathBuf> {
    Ok(private_staging()?.join(format!("{}.{what}", uuid::Uuid::new_v4().simple())))
}

/// Creates `path` (which must not exist) readable and writable by this user only.
fn new_private_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// A staged local file, deleted when dropped.
#[derive(Debug)]
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A local copy of a stored file, for tools that read a path (`pg_restore`): a private
/// staged copy (deleted when dropped), or for a plain read the directory target's file.
#[derive(Debug)]
pub struct LocalCopy {
    path: PathBuf,
    _staged: Option<Staged>,
}

impl LocalCopy {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `contents` as a new private file in the staging directory (a `pg_restore` list),
/// deleted when dropped.
pub fn private_text(what: &str, contents: &str) -> io::Result<LocalCopy> {
    let (staged, mut file) = staged_file(what)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(LocalCopy {
        path: staged.0.clone(),
        _staged: Some(staged),
    })
}

/// A stored file being read (blocking).
pub struct Reader {
    file: BufReader<File>,
    _staged: Option<Staged>,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

/// Where a file goes once committed.
enum Destination {
    Path(PathBuf),
    Object(Bucket, String),
}

/// The bytes of a file on their way to disk, counted and hashed as stored.
type Hashed = HashingWriter<BufWriter<File>>;

/// What is written to a pending file: stored as it is, or encrypted first.
enum Sink {
    Plain(Hashed),
    Encrypted(age::stream::StreamWriter<Hashed>),
}

/// A file being written to the target; [`PendingFile::commit`] puts it in place.
pub struct PendingFile {
    writer: Sink,
    partial: PathBuf,
    destination: Destination,
}

impl PendingFile {
    /// Ends the encryption (if any), flushes the file to disk, puts it in place (a
    /// rename, or an upload from this blocking thread) and returns the size and SHA-256
    /// of the stored bytes.
    pub fn commit(self) -> io::Result<(u64, String)> {
        let hashed = match self.writer {
            Sink::Plain(hashed) => hashed,
            Sink::Encrypted(writer) => writer.finish()?,
        };
        let (buffered, size, sha256) = hashed.finish();
        let file = buffered.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        drop(file);
        match self.destination {
            Destination::Path(path) => fs::rename(&self.partial, &path)?,
            Destination::Object(bucket, key) => {
                let staged = Staged(self.partial.clone());
                tokio::runtime::Handle::current().block_on(bucket.upload(&staged.0, &key))?;
            }
        }
        Ok((size, sha256))
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Sink::Plain(writer) => writer.write(buf),
            Sink::Encrypted(writer) => writer.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Sink::Plain(writer) => writer.flush(),
            Sink::Encrypted(writer) => writer.flush(),
        }
    }
}

impl Storage {
    /// Where it is, for the page and the history ("/var/backups/salvage",
    /// "s3://backups/salvage").
    pub fn describe(&self) -> String {
        match self {
            Storage::Directory(dir) => dir.display().to_string(),
            Storage::Bucket(bucket) => bucket.url.clone(),
        }
    }

    /// Starts writing `key` (blocking; its folders are made as needed), encrypted when
    /// `encryption` is given. The file is readable by this user only.
    pub fn create(&self, key: &str, encryption: Option<&Encryption>) -> io::Result<PendingFile> {
        let (partial, destination, file) = match self {
            Storage::Directory(dir) => {
                let path = dir.join(key);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                let partial = partial_name(&path);
                // A partial file left by a process that died is started again.
                match fs::remove_file(&partial) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                    _ => {}
                }
                let file = new_private_file(&partial)?;
                (partial, Destination::Path(path), file)
            }
            Storage::Bucket(bucket) => {
                let partial = staged_path("partial")?;
                let file = new_private_file(&partial)?;
                (
                    partial,
                    Destination::Object(bucket.clone(), key.to_owned()),
                    file,
                )
            }
        };
        let hashed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let writer = match encryption {
            None => Sink::Plain(hashed),
            Some(encryption) => Sink::Encrypted(encryption.encrypting(hashed)?),
        };
        Ok(PendingFile {
            writer,
            partial,
            destination,
        })
    }

    /// Reads `key` (blocking; a bucket's object is downloaded first).
    pub fn open(&self, key: &str) -> io::Result<Reader> {
        match self {
            Storage::Directory(dir) => Ok(Reader {
                file: BufReader::with_capacity(1 << 20, File::open(dir.join(key))?),
                _staged: None,
            }),
            Storage::Bucket(bucket) => {
                let staged = tokio::runtime::Handle::current().block_on(bucket.download(key))?;
                Ok(Reader {
                    file: BufReader::with_capacity(1 << 20, File::open(&staged.0)?),
                    _staged: Some(staged),
                })
            }
        }
    }

    /// A private copy of `key` in the staging directory (decrypted when `decryption` is
    /// given), with the size and SHA-256 of the stored bytes as read for that copy: a tool
    /// then reads exactly what was checked, however the target changes meanwhile. One
    /// read of the target (one download of a bucket).
    pub async fn private_copy(
        &self,
        key: &str,
        decryption: Option<&Encryption>,
    ) -> io::Result<(LocalCopy, u64, String)> {
        let storage = self.clone();
        let key = key.to_owned();
        let decryption = decryption.cloned();
        let (staged, size, sha256) =
            tokio::task::spawn_blocking(move || -> io::Result<(Staged, u64, String)> {
                let mut hashing = super::native::HashingReader::new(storage.open(&key)?);
                let (staged, file) = staged_file("copy")?;
                let mut copy = BufWriter::with_capacity(1 << 20, file);
                match &decryption {
                    None => io::copy(&mut hashing, &mut copy)?,
                    Some(identity) => io::copy(&mut identity.decrypting(&mut hashing)?, &mut copy)?,
                };
                copy.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                let (size, sha256) = hashing.finish()?;
                Ok((staged, size, sha256))
            })
            .await
            .map_err(io::Error::other)??;
        Ok((
            LocalCopy {
                path: staged.0.clone(),
                _staged: Some(staged),
            },
            size,
            sha256,
        ))
    }

    /// Writes `bytes` as `key` in one go (the manifest: its presence commits a backup).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
        match self {
            Storage::Bucket(bucket) => bucket
                .store
                .put(&bucket.path(key), PutPayload::from(bytes))
                .await
                .map(drop)
                .map_err(io::Error::other),
            Storage::Directory(_) => {
                let storage = self.clone();
                let key = key.to_owned();
                tokio::task::spawn_blocking(move || {
                    let mut file = storage.create(&key, None)?;
                    file.write_all(&bytes)?;
                    file.commit().map(drop)
                })
                .await
                .map_err(io::Error::other)?
            }
        }
    }

    /// The whole of `key`, for small files (the manifest).
    pub async fn read(&self, key: &str) -> io::Result<Vec<u8>> {
        match self {
            Storage::Directory(dir) => tokio::fs::read(dir.join(key)).await,
            Storage::Bucket(bucket) => {
                let object = bucket
                    .store
                    .get(&bucket.path(key))
                    .await
                    .map_err(not_found)?;
                Ok(object.bytes().await.map_err(io::Error::other)?.to_vec())
            }
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> io::Result<bool> {
        match self {
            Storage::Directory(dir) => Ok(tokio::fs::metadata(dir.join(key))
                .await
                .is_ok_and(|m| m.is_file())),
            Storage::Bucket(bucket) => match bucket.store.head(&bucket.path(key)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(other) => Err(io::Error::other(other)),
            },
        }
    }

    /// The folders under `top` (`postgres`, `clickhouse`) that hold a `file` (a backup's
    /// manifest): `postgres/12`, … in no particular order. What the repository holds,
    /// whatever the catalogue says.
    pub async fn folders_with(&self, top: &str, file: &str) -> io::Result<Vec<String>> {
        match self {
            Storage::Directory(dir) => {
                let mut found = Vec::new();
                let mut entries = match tokio::fs::read_dir(dir.join(top)).await {
                    Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(found),
                    other => other?,
                };
                while let Some(entry) = entries.next_entry().await? {
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if tokio::fs::metadata(entry.path().join(file))
                        .await
                        .is_ok_and(|m| m.is_file())
                    {
                        found.push(format!("{top}/{name}"));
                    }
                }
                Ok(found)
            }
            Storage::Bucket(bucket) => {
                let objects: Vec<_> = bucket
                    .store
                    .list(Some(&bucket.path(top)))
                    .try_collect()
                    .await
                    .map_err(io::Error::other)?;
                let suffix = format!("/{file}");
                Ok(objects
                    .iter()
                    .filter_map(|object| {
                        let key = object.location.as_ref().strip_prefix(&bucket.prefix)?;
                        let folder = key.strip_suffix(&suffix)?;
                        (folder.matches('/').count() == 1).then(|| folder.to_owned())
                    })
                    .collect())
            }
        }
    }

    /// Deletes every file under `prefix` (a backup's folder). Deleting what is not there
    /// is not an error.
    pub async fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        match self {
            Storage::Directory(dir) => match tokio::fs::remove_dir_all(dir.join(prefix)).await {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
            Storage::Bucket(bucket) => {
                let folder = bucket.path(prefix);
                let objects: Vec<_> = bucket
                    .store
                    .list(Some(&folder))
                    .try_collect()
                    .await
                    .map_err(io::Error::other)?;
                for object in objects {
                    match bucket.store.delete(&object.location).await {
                        Err(object_store::Error::NotFound { .. }) | Ok(()) => {}
                        Err(other) => return Err(io::Error::other(other)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Checks that the target can be written: a probe file written and removed. A backup
    /// fails here, before it takes any snapshot.
    pub async fn check_writable(&self) -> io::Result<()> {
        const PROBE: &str = ".salvage-write-probe";
        self.put(PROBE, b"ok".to_vec()).await?;
        match self {
            Storage::Directory(dir) => tokio::fs::remove_file(dir.join(PROBE)).await,
            Storage::Bucket(bucket) => bucket
                .store
                .delete(&bucket.path(PROBE))
                .await
                .map_err(io::Error::other),
        }
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

    #[tokio::test]
    async fn a_file_is_visible_under_its_key_only_once_committed() {
        let dir = std::env::temp_dir().join(format!("salvage-storage-{}", uuid::Uuid::new_v4()));
        let storage = Storage::Directory(dir.clone());
        let mut file = storage.create("postgres/1/postgres.dump", None).unwrap();
        file.write_all(b"dump").unwrap();
        assert!(!storage.exists("postgres/1/postgres.dump").await.unwrap());
        let (size, _) = file.commit().unwrap();
        assert_eq!(size, 4);
        assert_eq!(
            storage.read("postgres/1/postgres.dump").await.unwrap(),
            b"dump"
        );
        storage.delete_prefix("postgres/1").await.unwrap();
        assert!(!storage.exists("postgres/1/postgres.dump").await.unwrap());
        storage.delete_prefix("postgres/1").await.unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_private_copy_keeps_the_bytes_it_hashed_when_the_stored_file_changes_after() {
        use sha2::Digest;
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("salvage-storage-{}", uuid::Uuid::new_v4()));
        let storage = Storage::Directory(dir.clone());
        let mut file = storage.create("postgres/2/postgres.dump", None).unwrap();
        file.write_all(b"the dump as it was signed").unwrap();
        file.commit().unwrap();
        let stored = dir.join("postgres/2/postgres.dump");
        assert_eq!(
            fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let (copy, size, sha256) = storage
            .private_copy("postgres/2/postgres.dump", None)
            .await
            .unwrap();
        // Swapped in the repository after the check, before a tool reads the copy.
        fs::write(&stored, b"a dump swapped in by someone else").unwrap();
        assert_eq!(fs::read(copy.path()).unwrap(), b"the dump as it was signed");
        assert_eq!(size, 25);
        assert_eq!(
            sha256,
            super::super::native::hex(&sha2::Sha256::digest(b"the dump as it was signed"))
        );
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(copy.path()), 0o600, "the copy is this user's only");
        assert_eq!(
            mode(copy.path().parent().unwrap()),
            0o700,
            "and so is its directory"
        );
        let path = copy.path().to_path_buf();
        drop(copy);
        assert!(!path.exists(), "deleted with its handle");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bucket_url_must_name_a_bucket() {
        assert!(Bucket::new("s3://backups/salvage", &[("aws_region", "us-east-1")]).is_ok());
        assert!(Bucket::new("https://backups/salvage", &[]).is_err());
        assert!(Bucket::new("s3:///salvage", &[]).is_err());
    }
}
