//! Files (product downloads, later ID documents) behind a small trait, so
//! an S3-compatible store can be added without touching callers. The local
//! store keeps each file under `<data_dir>/files/<key>`; keys are ours
//! (letters, digits, `-`, `_`, `.`), never a path someone typed.

use crate::AppError;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::io::AsyncRead;

pub type FileReader = Pin<Box<dyn AsyncRead + Send>>;
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

pub trait FileStore: Send + Sync {
    /// Stores bytes under a key, replacing what was there.
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> Boxed<'a, ()>;
    /// A reader over the file, streamed, never loaded whole; `None` if absent.
    fn open<'a>(&'a self, key: &'a str) -> Boxed<'a, Option<FileReader>>;
    fn delete<'a>(&'a self, key: &'a str) -> Boxed<'a, ()>;
}

/// Files in a local directory (created owner-only).
pub struct LocalFileStore {
    root: PathBuf,
}

fn checked(key: &str) -> Result<&str, AppError> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && !key.starts_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    // Keys are made by Coffer, never typed: a bad one is our mistake.
    if ok { Ok(key) } else { Err(AppError::Files("not a valid file key".into())) }
}

impl LocalFileStore {
    pub fn new(root: PathBuf) -> Result<Self, AppError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| AppError::Files(format!("the file folder cannot be created: {e}")))?;
        Ok(LocalFileStore { root })
    }
}

fn io(e: std::io::Error) -> AppError {
    AppError::Files(format!("file store: {}", e.kind()))
}

impl FileStore for LocalFileStore {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> Boxed<'a, ()> {
        Box::pin(async move {
            let path = self.root.join(checked(key)?);
            // Written aside and renamed, so a reader never sees half a file.
            let partial = self.root.join(format!("{key}.partial"));
            tokio::fs::write(&partial, bytes).await.map_err(io)?;
            tokio::fs::rename(&partial, &path).await.map_err(io)
        })
    }

    fn open<'a>(&'a self, key: &'a str) -> Boxed<'a, Option<FileReader>> {
        Box::pin(async move {
            match tokio::fs::File::open(self.root.join(checked(key)?)).await {
                Ok(file) => Ok(Some(Box::pin(file) as FileReader)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> Boxed<'a, ()> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.root.join(checked(key)?)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn stores_opens_and_deletes_and_refuses_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::new(dir.path().join("files")).unwrap();
        store.put("prd_1.bin", b"hello").await.unwrap();
        let mut text = String::new();
        store.open("prd_1.bin").await.unwrap().unwrap().read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello");
        assert!(store.open("missing").await.unwrap().is_none());
        for bad in ["../etc/passwd", "a/b", "", ".hidden"] {
            assert!(store.put(bad, b"x").await.is_err(), "{bad}");
        }
        store.delete("prd_1.bin").await.unwrap();
        assert!(store.open("prd_1.bin").await.unwrap().is_none());
    }
}
