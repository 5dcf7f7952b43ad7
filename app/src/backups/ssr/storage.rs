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
    /// Where files are staged on their way to and from the bucket.
    staging: PathBuf,
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
            staging: std::env::temp_dir().join("salvage-backup-staging"),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.prefix))
    }

    fn staged(&self, what: &str) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.staging)?;
        Ok(self
            .staging
            .join(format!("{}.{what}", uuid::Uuid::new_v4().simple())))
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
        let path = self.staged("download")?;
        let staged = Staged(path.clone());
        let mut stream = self
            .store
            .get(&self.path(key))
            .await
            .map_err(not_found)?
            .into_stream();
        let mut file = tokio::fs::File::create(&path).await?;
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

/// A staged local file, deleted when dropped.
#[derive(Debug)]
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A local copy of a stored file, for tools that read a path (`pg_restore`): the file
/// itself for a directory, a staged download (deleted when dropped) for a bucket.
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

/// A file being written to the target; [`PendingFile::commit`] puts it in place.
pub struct PendingFile {
    writer: HashingWriter<BufWriter<File>>,
    partial: PathBuf,
    destination: Destination,
}

impl PendingFile {
    /// Flushes the file to disk, puts it in place (a rename, or an upload from this
    /// blocking thread) and returns its size and SHA-256.
    pub fn commit(self) -> io::Result<(u64, String)> {
        let (buffered, size, sha256) = self.writer.finish();
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
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
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

    /// Starts writing `key` (blocking; its folders are made as needed).
    pub fn create(&self, key: &str) -> io::Result<PendingFile> {
        let (partial, destination) = match self {
            Storage::Directory(dir) => {
                let path = dir.join(key);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                (partial_name(&path), Destination::Path(path))
            }
            Storage::Bucket(bucket) => (
                bucket.staged("partial")?,
                Destination::Object(bucket.clone(), key.to_owned()),
            ),
        };
        let file = File::create(&partial)?;
        Ok(PendingFile {
            writer: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
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

    /// A local copy of `key` for a tool that reads a path.
    pub async fn local_copy(&self, key: &str) -> io::Result<LocalCopy> {
        match self {
            Storage::Directory(dir) => Ok(LocalCopy {
                path: dir.join(key),
                _staged: None,
            }),
            Storage::Bucket(bucket) => {
                let staged = bucket.download(key).await?;
                Ok(LocalCopy {
                    path: staged.0.clone(),
                    _staged: Some(staged),
                })
            }
        }
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
                    let mut file = storage.create(&key)?;
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
        let mut file = storage.create("postgres/1/postgres.dump").unwrap();
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

    #[test]
    fn a_bucket_url_must_name_a_bucket() {
        assert!(Bucket::new("s3://backups/salvage", &[("aws_region", "us-east-1")]).is_ok());
        assert!(Bucket::new("https://backups/salvage", &[]).is_err());
        assert!(Bucket::new("s3:///salvage", &[]).is_err());
    }
}
