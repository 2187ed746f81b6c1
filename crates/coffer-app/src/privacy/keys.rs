//! Where master keys come from. [`KeyProvider`] lets an external KMS stand
//! in without touching callers; [`FileKeyProvider`] keeps one file per
//! version in the key directory, readable by the owner only.

use crate::AppError;
use coffer_crypto::MasterKey;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub trait KeyProvider: Send + Sync {
    /// Loads an existing version.
    fn load(&self, version: u32) -> Result<MasterKey, AppError>;
    /// Creates a new version (refuses if it exists) and returns it.
    fn create(&self, version: u32) -> Result<MasterKey, AppError>;
    /// Destroys a version for good.
    fn destroy(&self, version: u32) -> Result<(), AppError>;
}

/// Master keys in files `master-v<N>.key` (mode 0600) in a directory (0700).
pub struct FileKeyProvider {
    dir: PathBuf,
}

fn keys_error(message: String) -> AppError {
    AppError::Keys(message)
}

/// Refuses a path that group or others may read or write.
fn check_private(path: &Path, what: &str) -> Result<(), AppError> {
    let meta = fs::metadata(path).map_err(|e| keys_error(format!("{what} {} cannot be read: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let fix = if meta.is_dir() { "700" } else { "600" };
        return Err(keys_error(format!(
            "{what} {} is open to group or others (mode {mode:o}); run: chmod {fix} {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

impl FileKeyProvider {
    /// Opens the key directory, creating it (0700) when missing; refuses a
    /// directory that group or others can read.
    pub fn open(dir: &Path) -> Result<FileKeyProvider, AppError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| keys_error(format!("the key directory {} cannot be created: {e}", dir.display())))?;
        }
        check_private(dir, "the key directory")?;
        Ok(FileKeyProvider { dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, version: u32) -> PathBuf {
        self.dir.join(format!("master-v{version}.key"))
    }
}

impl KeyProvider for FileKeyProvider {
    fn load(&self, version: u32) -> Result<MasterKey, AppError> {
        let file = self.file(version);
        if !file.exists() {
            return Err(keys_error(format!(
                "master key version {version} is missing: {} does not exist (wrong --key-dir?)",
                file.display()
            )));
        }
        check_private(&file, "the master key file")?;
        let text = Zeroizing::new(
            fs::read_to_string(&file)
                .map_err(|e| keys_error(format!("the master key file {} cannot be read: {e}", file.display())))?,
        );
        MasterKey::from_file_text(version, &text)
            .map_err(|e| keys_error(format!("the master key file {} is not a key: {e}", file.display())))
    }

    fn create(&self, version: u32) -> Result<MasterKey, AppError> {
        let key = MasterKey::generate(version)?;
        let file = self.file(version);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| keys_error(format!("the master key file {} cannot be created: {e}", file.display())))?;
        out.write_all(key.to_file_text().as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| keys_error(format!("the master key file {} cannot be written: {e}", file.display())))?;
        // The new name must be durable too.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(key)
    }

    fn destroy(&self, version: u32) -> Result<(), AppError> {
        let file = self.file(version);
        match fs::remove_file(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(keys_error(format!("the master key file {} cannot be removed: {e}", file.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_files_and_refuses_open_ones() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        let provider = FileKeyProvider::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let key = provider.create(1).unwrap();
        let file = dir.join("master-v1.key");
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(provider.load(1).unwrap().version(), key.version());
        assert!(provider.create(1).is_err(), "never overwrites a key");

        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let err = provider.load(1).unwrap_err().to_string();
        assert!(err.contains("open to group or others") && err.contains("chmod 600"), "{err}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = FileKeyProvider::open(&dir).err().unwrap().to_string();
        assert!(err.contains("chmod 700"), "{err}");
    }

    #[test]
    fn missing_or_garbled_key_is_named() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let provider = FileKeyProvider::open(root.path()).unwrap();
        let err = provider.load(4).unwrap_err().to_string();
        assert!(err.contains("version 4 is missing"), "{err}");
        let file = root.path().join("master-v4.key");
        fs::write(&file, "garbage").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let err = provider.load(4).unwrap_err().to_string();
        assert!(err.contains("is not a key"), "{err}");
    }
}
