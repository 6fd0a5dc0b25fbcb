//! Reloading the tree on SIGHUP, without stopping the server.
//!
//! The signal only sets a flag. The loop calls [`Reloader::poll`] once per iteration: when the
//! flag is set it starts loading the tree on a background thread (the loop keeps serving from
//! the old cache meanwhile), and when that thread is done it hands back the new cache, or the
//! reason the load failed. The caller swaps the cache in with [`crate::server::Server::set_cache`];
//! connections adopt it between requests (see `http::HttpContext::cache`), so a response that has
//! started always finishes from the tree it started with. A failed load changes nothing.
//!
//! A SIGHUP that arrives during a load is kept, and starts another load once this one ends, so
//! the last signal always leads to a load that sees the tree as it was then.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::cache::{CacheError, ContentCache, LoadOptions};

/// The outcome of one reload.
pub enum Reloaded {
    /// The new tree, and how long it took to load.
    Loaded(Arc<ContentCache>, std::time::Duration),
    /// Why the tree could not be loaded; the old one stays in force.
    Failed(String),
}

pub struct Reloader {
    requested: Arc<AtomicBool>,
    root: PathBuf,
    options: LoadOptions,
    loading: Option<(JoinHandle<Result<ContentCache, CacheError>>, Instant)>,
}

impl Reloader {
    /// A reloader that SIGHUP triggers.
    pub fn on_sighup(root: PathBuf, options: LoadOptions) -> std::io::Result<Reloader> {
        let requested = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&requested))?;
        Ok(Reloader::new(requested, root, options))
    }

    /// A reloader triggered by setting `requested` (SIGHUP's flag, or a test's).
    pub fn new(requested: Arc<AtomicBool>, root: PathBuf, options: LoadOptions) -> Reloader {
        Reloader {
            requested,
            root,
            options,
            loading: None,
        }
    }

    /// Starts a load when one was requested; returns the result of a load that has finished.
    /// When nothing happens this is one atomic load and one branch.
    pub fn poll(&mut self) -> Option<Reloaded> {
        if let Some((handle, _)) = &self.loading {
            if !handle.is_finished() {
                return None;
            }
            let (handle, started) = self.loading.take()?;
            return Some(match handle.join() {
                Ok(Ok(cache)) => Reloaded::Loaded(Arc::new(cache), started.elapsed()),
                Ok(Err(error)) => Reloaded::Failed(error.to_string()),
                Err(_) => Reloaded::Failed("the loading thread panicked".into()),
            });
        }
        if self.requested.load(Ordering::Relaxed) && self.requested.swap(false, Ordering::Relaxed) {
            let (root, options) = (self.root.clone(), self.options.clone());
            let spawned = std::thread::Builder::new()
                .name("sirocco-reload".into())
                .spawn(move || ContentCache::load_with(&root, &options, &mut |_| {}));
            match spawned {
                Ok(handle) => self.loading = Some((handle, Instant::now())),
                Err(error) => {
                    return Some(Reloaded::Failed(format!(
                        "cannot start the loading thread: {error}"
                    )));
                }
            }
        }
        None
    }
}
