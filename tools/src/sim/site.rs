//! Temporary document roots with known contents, for simulations, benchmarks and tests.
//!
//! A [`SiteTree`] is a fresh directory under the system temp dir (its name is unique to the
//! process and the call), filled through [`SiteTree::add`], and removed with everything in it
//! when the tree is dropped, even when a test fails. It remembers each file's URL path and
//! body, so a script can expect the exact bytes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::script::Request;

/// A file as the server should serve it.
#[derive(Debug, Clone)]
pub struct SiteFile {
    /// The URL path that names it, e.g. `/sub/a.txt` (or `/sub/` for an index).
    pub url: String,
    pub body: Arc<[u8]>,
}

/// A temporary document root. See the module documentation.
#[derive(Debug)]
pub struct SiteTree {
    root: PathBuf,
    files: Vec<SiteFile>,
}

impl SiteTree {
    /// Creates an empty tree; `label` goes into the directory name.
    pub fn new(label: &str) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "sirocco-{label}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(name);
        // `create_dir`, not `create_dir_all`: the directory must be new, and ours alone.
        std::fs::create_dir(&root)?;
        Ok(SiteTree {
            root,
            files: Vec::new(),
        })
    }

    /// Writes `body` at `relative` (slash-separated; parent directories are created) and
    /// records it under the URL `/relative`. Returns the shared body.
    pub fn add(&mut self, relative: &str, body: Vec<u8>) -> io::Result<Arc<[u8]>> {
        let path = self.root.join(relative.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &body)?;
        let body: Arc<[u8]> = body.into();
        self.files.push(SiteFile {
            url: format!("/{}", relative.trim_start_matches('/')),
            body: Arc::clone(&body),
        });
        Ok(body)
    }

    /// Records another URL for an existing body (`/` for `/index.html`, for instance).
    pub fn alias(&mut self, url: &str, body: Arc<[u8]>) {
        self.files.push(SiteFile {
            url: url.to_owned(),
            body,
        });
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every URL with its body, in the order they were added.
    pub fn files(&self) -> &[SiteFile] {
        &self.files
    }

    /// The body served at `url`.
    pub fn body(&self, url: &str) -> Option<Arc<[u8]>> {
        self.files
            .iter()
            .find(|f| f.url == url)
            .map(|f| Arc::clone(&f.body))
    }

    /// A GET request for every URL, expecting its exact body.
    pub fn get_all(&self) -> Arc<[Request]> {
        self.files
            .iter()
            .map(|f| Request::get(&f.url, Arc::clone(&f.body)))
            .collect()
    }
}

impl Drop for SiteTree {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is no reason to panic in a destructor.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_recorded_and_removed_on_drop() {
        let mut tree = SiteTree::new("unit").unwrap();
        let root = tree.root().to_path_buf();
        let body = tree.add("sub/a.txt", b"hello".to_vec()).unwrap();
        tree.alias("/sub/", Arc::clone(&body));
        assert_eq!(std::fs::read(root.join("sub/a.txt")).unwrap(), b"hello");
        assert_eq!(tree.body("/sub/a.txt").as_deref(), Some(&b"hello"[..]));
        assert_eq!(tree.get_all().len(), 2);
        let other = SiteTree::new("unit").unwrap();
        assert_ne!(other.root(), tree.root());
        drop(tree);
        assert!(!root.exists());
    }
}
