//! Packages loaded once and reused by later runs while their file is unchanged: a run checks the
//! file's size and modification time (one `stat`) instead of reading, hashing and parsing it.
//! Packages that run child packages are not cached, since a change to a child's file would not
//! show in the parent's metadata.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use switchyard_package::LoadError;
use switchyard_package::load::{LoadOptions, load_package_text_with};
use switchyard_package::model::{Package, Task, TaskKind};

use crate::config::AgentConfig;

/// Where a step's package lives: pushed packages first, then packages_dir.
pub(crate) fn package_file(config: &AgentConfig, path: &str) -> PathBuf {
    package_location(config, path).0
}

/// A step's package file and the folder it was found in (pushed packages, else packages_dir):
/// the root its child packages are confined to.
pub(crate) fn package_location(config: &AgentConfig, path: &str) -> (PathBuf, PathBuf) {
    let pushed_dir = pushed_packages_dir(&config.data_dir);
    let pushed = pushed_dir.join(path);
    if pushed.exists() { (pushed, pushed_dir) } else { (config.packages_dir.join(path), config.packages_dir.clone()) }
}

/// The folder pushed packages are written to.
pub(crate) fn pushed_packages_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("packages")
}

/// A loaded package and the SHA-256 of its file.
#[derive(Debug, Clone)]
pub struct CachedPackage {
    /// The package.
    pub package: Arc<Package>,
    /// Hex SHA-256 of the file's bytes.
    pub hash: String,
}

/// The file metadata an entry is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// Packages by file path.
#[derive(Debug, Default)]
pub struct PackageCache {
    entries: Mutex<HashMap<PathBuf, (Stamp, CachedPackage)>>,
}

impl PackageCache {
    /// The package at `file`: from the cache while the file's size and mtime are unchanged,
    /// else read, hashed and loaded (and cached when it runs no child package).
    pub fn load(&self, file: &Path) -> Result<CachedPackage, LoadError> {
        self.load_with(file, &LoadOptions::default())
    }

    /// [`PackageCache::load`] with `[limits]` and the root child packages are confined to.
    pub fn load_with(&self, file: &Path, options: &LoadOptions) -> Result<CachedPackage, LoadError> {
        let metadata = std::fs::metadata(file).map_err(|e| read_error(file, e))?;
        let stamp = Stamp { len: metadata.len(), modified: metadata.modified().ok() };
        if let Some((cached_stamp, cached)) = self.lock().get(file)
            && *cached_stamp == stamp
        {
            return Ok(cached.clone());
        }
        let bytes = std::fs::read(file).map_err(|e| read_error(file, e))?;
        let hash = hex::encode(Sha256::digest(&bytes));
        let text = String::from_utf8_lossy(&bytes);
        let package = load_package_text_with(file, &text, options)?.package;
        let loaded = CachedPackage { package, hash };
        if !runs_children(&loaded.package.tasks) {
            self.lock().insert(file.to_path_buf(), (stamp, loaded.clone()));
        }
        Ok(loaded)
    }

    /// Forgets every entry (a package was pushed or removed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Stamp, CachedPackage)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_error(file: &Path, error: std::io::Error) -> LoadError {
    if error.kind() == std::io::ErrorKind::NotFound {
        LoadError::NotFound(file.to_path_buf())
    } else {
        LoadError::Unreadable { path: file.to_path_buf(), source: error }
    }
}

/// True when a task (at any depth) runs a child package.
fn runs_children(tasks: &[Task]) -> bool {
    tasks.iter().any(|task| match &task.kind {
        TaskKind::Package(_) => true,
        TaskKind::Sequence(c) => runs_children(&c.tasks),
        TaskKind::Foreach(f) => runs_children(&f.body.tasks),
        TaskKind::For(f) => runs_children(&f.body.tasks),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "[package]\nname = \"one\"\n\n[[tasks]]\nname = \"a\"\nkind = \"sleep\"\nduration = \"0s\"\n";

    #[test]
    fn a_changed_file_is_loaded_again_and_an_unchanged_one_is_not_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.toml");
        std::fs::write(&file, ONE).expect("write");
        let cache = PackageCache::default();
        let first = cache.load(&file).expect("loads");
        let again = cache.load(&file).expect("loads");
        assert!(Arc::ptr_eq(&first.package, &again.package), "served from the cache");
        assert_eq!(first.hash, hex::encode(Sha256::digest(ONE.as_bytes())));

        let changed = ONE.replace("\"one\"", "\"changed\"");
        std::fs::write(&file, &changed).expect("rewrite");
        let reloaded = cache.load(&file).expect("loads");
        assert_eq!(reloaded.package.name, "changed");
        assert_eq!(reloaded.hash, hex::encode(Sha256::digest(changed.as_bytes())));
    }

    #[test]
    fn a_missing_file_is_not_found_and_a_package_with_children_is_not_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = PackageCache::default();
        assert!(matches!(cache.load(&dir.path().join("none.toml")), Err(LoadError::NotFound(_))));

        std::fs::write(dir.path().join("child.toml"), ONE).expect("write child");
        let parent = dir.path().join("parent.toml");
        std::fs::write(
            &parent,
            "[package]\nname = \"parent\"\n\n[[tasks]]\nname = \"c\"\nkind = \"package\"\npath = \"child.toml\"\n",
        )
        .expect("write parent");
        let first = cache.load(&parent).expect("loads");
        let again = cache.load(&parent).expect("loads");
        assert!(!Arc::ptr_eq(&first.package, &again.package), "loaded each time");
    }
}
