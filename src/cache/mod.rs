//! The content cache: a whole directory tree loaded into memory at start-up, with every response
//! head prebuilt (the Sandstorm approach in DESIGN.md).
//!
//! Contract:
//! - [`ContentCache::load`] reads every regular file under the root into **one** arena; a
//!   file's body is a range of it. Nothing is read from disk after `load` returns, and the cache
//!   is immutable, so one cache can be shared (`Arc`) by every core.
//! - Dot-files are served (nginx's default). A symlink whose target resolves outside the root is
//!   refused and listed in [`LoadReport::refused_symlinks`]; broken symlinks, symlink loops and
//!   names that are not UTF-8 are skipped and listed too. Anything else that cannot be read is
//!   an error naming the path.
//! - [`ContentCache::lookup`] takes an already normalized path (see `http::target`): it starts
//!   with `/`, has no dot segments and no empty segments. Any other string finds nothing.
//! - Heads from [`CachedFile`] and [`StatusPage`] are unterminated (see [`pages`]).
//! - **Content codings.** When `file.gz` or `file.br` sits next to `file`, a request for `file`
//!   whose `Accept-Encoding` allows it gets that variant ([`ContentCache::negotiate`]), with
//!   `Content-Encoding` and `Vary: Accept-Encoding`; the variant files are also served under
//!   their own names. [`LoadOptions::compress`] builds gzip variants at load for compressible
//!   types that have none on disk.
//! - [`LoadOptions::max_bytes`] bounds the content held (files and built variants); a tree that
//!   does not fit is an error, never a partial cache.

mod encoding;
pub mod pages;
mod shared;
mod sums;

/// gzip for tests elsewhere in the crate (building `.gz` fixtures).
#[cfg(test)]
pub(crate) mod encoding_for_tests {
    pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
        super::encoding::gzip(body).expect("gzip")
    }
}

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use shared::TreeBytes;

pub use pages::{SERVER_NAME, Status, StatusPage, http_date};

/// A file in a [`ContentCache`]. Only meaningful for the cache that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(u32);

/// A directory in a [`ContentCache`] (for its redirect target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirId(u32);

/// The answer to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A file, or the `index.html` of a directory named with a trailing slash.
    File(FileId),
    /// A directory named without its trailing slash: redirect to
    /// [`ContentCache::redirect_location`].
    RedirectToDir(DirId),
    /// A directory with no `index.html` (nginx answers 403 when autoindex is off).
    Forbidden,
    NotFound,
}

/// One cached file, as borrowed from the cache.
#[derive(Debug, Clone, Copy)]
pub struct CachedFile<'a> {
    /// Unterminated 200 head: status line, Server, Content-Type, Content-Length, Last-Modified,
    /// ETag, Accept-Ranges.
    pub head: &'a [u8],
    /// Unterminated 206 head without Content-Range and Content-Length.
    pub partial_head: &'a [u8],
    /// Unterminated 304 head: status line, Server and the validators.
    pub not_modified_head: &'a [u8],
    /// Unterminated multipart/byteranges 206 head, without Content-Type and Content-Length.
    pub multipart_head: &'a [u8],
    pub body: &'a [u8],
    /// The strong entity tag, quotes included: `"<16 hex digits of xxh3-64>"` (of the bytes
    /// sent, so a gzip variant has its own).
    pub etag: &'a str,
    /// Modification time in Unix seconds, if the file system gave one.
    pub last_modified: Option<u64>,
    pub content_type: &'a str,
}

/// Why a tree could not be loaded. Each message names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("document root {0} does not exist: pass an existing directory")]
    RootMissing(PathBuf),
    #[error("document root {0} is not a directory: pass the directory that holds the site")]
    RootNotDirectory(PathBuf),
    #[error("cannot read {path}: {source} (fix its permissions or remove it from the root)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the tree under {0} is larger than this cache can index (4 GiB of files and heads)")]
    TooLarge(PathBuf),
    #[error(
        "the tree under {root} needs {needed} bytes of cache ({what}), more than the limit of {limit} bytes (--max-cache-bytes): raise the limit or serve a smaller tree"
    )]
    OverLimit {
        root: PathBuf,
        needed: u64,
        limit: u64,
        what: &'static str,
    },
    #[error("compressing {path} at load: {source}")]
    Compress {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a tree is loaded. The default loads it as it is, with no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// A `Cache-Control` value for every file response (200, 206 and 304).
    pub cache_control: Option<String>,
    /// Build a gzip variant of each compressible file (text, JSON, JavaScript, SVG, ...) that
    /// has no `.gz` beside it, and keep it when it is smaller.
    pub compress: bool,
    /// Most bytes of content (files plus built variants) the cache may hold.
    pub max_bytes: Option<u64>,
}

/// How far a load has come, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    pub files_done: usize,
    pub files_total: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// What [`ContentCache::load`] left out, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Symlinks that resolve outside the root: not served.
    pub refused_symlinks: Vec<PathBuf>,
    /// Symlinks whose target does not exist: not served.
    pub broken_symlinks: Vec<PathBuf>,
    /// Symlinks that lead back to one of their own ancestors: not followed.
    pub symlink_loops: Vec<PathBuf>,
    /// Entries whose path is not UTF-8, so no request can name them.
    pub non_utf8_names: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    File(FileId),
    Dir { index: Option<FileId>, id: DirId },
}

#[derive(Debug)]
struct FileRecord {
    body: Range<usize>,
    head: Range<usize>,
    partial_head: Range<usize>,
    not_modified_head: Range<usize>,
    multipart_head: Range<usize>,
    etag: Box<str>,
    content_type: Box<str>,
    last_modified: Option<u64>,
    /// The gzip and brotli variants of this file, when it has them.
    gzip: Option<FileId>,
    br: Option<FileId>,
}

/// The in-memory site. See the module documentation for the contract.
#[derive(Debug)]
pub struct ContentCache {
    /// Every file body, back to back.
    arena: Vec<u8>,
    /// Every per-file head, back to back.
    heads: Vec<u8>,
    files: Vec<FileRecord>,
    /// Per directory: the percent-encoded `Location` of its redirect (`/dir/`).
    dirs: Vec<Box<str>>,
    /// Normalized path → entry. Directories are keyed without their trailing slash; the root is
    /// keyed by the empty string.
    index: HashMap<Box<[u8]>, Entry, ahash::RandomState>,
    pages: Vec<StatusPage>,
    report: LoadReport,
    /// Files of the tree (the first records); the rest of `files` are variants.
    tree_files: usize,
    /// Partial checksums of `arena`, for [`ContentCache::arena_sum`].
    sums: sums::ArenaSums,
}

/// The path index's hasher: ahash, a few times cheaper than the standard library's SipHash on
/// short keys (a lookup per request), keyed from the standard library's random keys. The index
/// is read-only once loaded, so requests can only probe it, never lengthen its chains: choosing
/// paths that collide gains an attacker nothing more than a miss costs.
fn index_hasher() -> ahash::RandomState {
    let keys = std::collections::hash_map::RandomState::new();
    let key = |i: u8| std::hash::BuildHasher::hash_one(&keys, i);
    ahash::RandomState::with_seeds(key(0), key(1), key(2), key(3))
}

/// A file found by the walk, not yet read.
struct Found {
    key: String,
    path: PathBuf,
    len: u64,
    last_modified: Option<u64>,
}

/// One engine's handle on a tree: a reference-counted pointer of the engine's own to the shared
/// [`ContentCache`]. Every connection holds a clone while it serves from the tree (taken at its
/// first request, dropped when the connection ends), and those clones write only this
/// handle's count, a cache line no other engine touches. The shared tree's own count changes
/// once per engine and reload, so engines serving new connections on different cores do not
/// bounce one line between them. The handle is also what sockets send bodies from
/// ([`EngineTree::payload`]).
#[derive(Debug, Clone)]
pub struct EngineTree(std::sync::Arc<TreeBytes>);

impl EngineTree {
    pub fn new(tree: std::sync::Arc<ContentCache>) -> EngineTree {
        EngineTree(std::sync::Arc::new(TreeBytes(tree)))
    }

    /// Another reference to the handle, as the buffer a socket sends bodies from.
    pub fn payload(&self) -> std::sync::Arc<dyn sirocco_netstack::SharedPayload> {
        self.0.clone()
    }

    /// Whether both handles are the same engine's handle on the same tree.
    pub fn same(a: &EngineTree, b: &EngineTree) -> bool {
        std::sync::Arc::ptr_eq(&a.0, &b.0)
    }

    /// The shared tree behind the handle.
    pub fn shared(&self) -> &std::sync::Arc<ContentCache> {
        &self.0.0
    }
}

impl std::ops::Deref for EngineTree {
    type Target = ContentCache;

    fn deref(&self) -> &ContentCache {
        &self.0.0
    }
}

impl ContentCache {
    /// Loads every file under `root` into memory with the default [`LoadOptions`].
    pub fn load(root: &Path) -> Result<ContentCache, CacheError> {
        Self::load_with(root, &LoadOptions::default(), &mut |_| {})
    }

    /// Loads every file under `root` into memory. See the module documentation. `progress` is
    /// called after each file is read.
    pub fn load_with(
        root: &Path,
        options: &LoadOptions,
        progress: &mut dyn FnMut(&LoadProgress),
    ) -> Result<ContentCache, CacheError> {
        let meta = match std::fs::metadata(root) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheError::RootMissing(root.to_path_buf()));
            }
            Err(source) => {
                return Err(CacheError::Read {
                    path: root.to_path_buf(),
                    source,
                });
            }
        };
        if !meta.is_dir() {
            return Err(CacheError::RootNotDirectory(root.to_path_buf()));
        }
        let canonical_root = root.canonicalize().map_err(|source| CacheError::Read {
            path: root.to_path_buf(),
            source,
        })?;

        let mut report = LoadReport::default();
        let mut found = Vec::new();
        let mut dir_keys = Vec::new();
        let mut walk = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = walk.next() {
            let entry = match item {
                Ok(entry) => entry,
                Err(error) => {
                    let path = error.path().map(Path::to_path_buf).unwrap_or_default();
                    if error.loop_ancestor().is_some() {
                        report.symlink_loops.push(path);
                        continue;
                    }
                    let dangling = std::fs::symlink_metadata(&path)
                        .map(|m| m.file_type().is_symlink())
                        .unwrap_or(false)
                        && std::fs::metadata(&path).is_err();
                    if dangling {
                        report.broken_symlinks.push(path);
                        continue;
                    }
                    let source = error
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("directory walk failed"));
                    return Err(CacheError::Read { path, source });
                }
            };
            let is_dir = entry.file_type().is_dir();
            if entry.path_is_symlink() {
                let inside = entry
                    .path()
                    .canonicalize()
                    .map(|target| target.starts_with(&canonical_root))
                    .unwrap_or(false);
                if !inside {
                    report.refused_symlinks.push(entry.path().to_path_buf());
                    if is_dir {
                        walk.skip_current_dir();
                    }
                    continue;
                }
            }
            let Some(key) = key_for(root, entry.path()) else {
                report.non_utf8_names.push(entry.path().to_path_buf());
                if is_dir {
                    walk.skip_current_dir();
                }
                continue;
            };
            if is_dir {
                dir_keys.push(key);
            } else if entry.file_type().is_file() {
                let meta = entry.metadata().map_err(|error| CacheError::Read {
                    path: entry.path().to_path_buf(),
                    source: error
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("metadata failed")),
                })?;
                let last_modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                found.push(Found {
                    key,
                    path: entry.path().to_path_buf(),
                    len: meta.len(),
                    last_modified,
                });
            }
            // Sockets, FIFOs and devices are not content: skipped silently, as nginx 404s them.
        }
        Self::build(root, found, dir_keys, report, options, progress)
    }

    fn build(
        root: &Path,
        found: Vec<Found>,
        dir_keys: Vec<String>,
        report: LoadReport,
        options: &LoadOptions,
        progress: &mut dyn FnMut(&LoadProgress),
    ) -> Result<ContentCache, CacheError> {
        let total: u64 = found.iter().map(|f| f.len).sum();
        let over_limit = |needed: u64, what| match options.max_bytes {
            Some(limit) if needed > limit => Err(CacheError::OverLimit {
                root: root.to_path_buf(),
                needed,
                limit,
                what,
            }),
            _ => Ok(()),
        };
        over_limit(total, "its files")?;
        if total > u64::from(u32::MAX) {
            return Err(CacheError::TooLarge(root.to_path_buf()));
        }

        // 1. Every body into the arena.
        let mut arena = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let mut bodies = Vec::with_capacity(found.len());
        let mut done = LoadProgress {
            files_done: 0,
            files_total: found.len(),
            bytes_done: 0,
            bytes_total: total,
        };
        for file in &found {
            let start = arena.len();
            File::open(&file.path)
                .and_then(|mut f| f.read_to_end(&mut arena))
                .map_err(|source| CacheError::Read {
                    path: file.path.clone(),
                    source,
                })?;
            bodies.push(start..arena.len());
            done.files_done += 1;
            done.bytes_done += (arena.len() - start) as u64;
            progress(&done);
        }
        let by_key: HashMap<&str, usize> = found
            .iter()
            .enumerate()
            .map(|(i, f)| (f.key.as_str(), i))
            .collect();

        // 2. Variants: `.gz`/`.br` files on disk, or gzip built here.
        struct Variant {
            of: usize,
            coding: encoding::Coding,
            body: Range<usize>,
            last_modified: Option<u64>,
        }
        let mut variants = Vec::new();
        for (i, file) in found.iter().enumerate() {
            for coding in encoding::Coding::ALL {
                let on_disk = by_key
                    .get(format!("{}{}", file.key, coding.suffix()).as_str())
                    .copied();
                if let Some(v) = on_disk {
                    variants.push(Variant {
                        of: i,
                        coding,
                        body: bodies[v].clone(),
                        last_modified: found[v].last_modified,
                    });
                    continue;
                }
                let content_type = pages::content_type(&file.path);
                let body = arena.get(bodies[i].clone()).unwrap_or_default();
                if coding != encoding::Coding::Gzip
                    || !options.compress
                    || !encoding::worth_compressing(&content_type, body.len())
                {
                    continue;
                }
                let packed = encoding::gzip(body).map_err(|source| CacheError::Compress {
                    path: file.path.clone(),
                    source,
                })?;
                if packed.len() >= body.len() {
                    continue;
                }
                let start = arena.len();
                arena.extend_from_slice(&packed);
                over_limit(arena.len() as u64, "its files and their gzip variants")?;
                variants.push(Variant {
                    of: i,
                    coding,
                    body: start..arena.len(),
                    last_modified: file.last_modified,
                });
            }
        }
        if arena.len() as u64 > u64::from(u32::MAX) {
            return Err(CacheError::TooLarge(root.to_path_buf()));
        }

        // 3. Records and their prebuilt heads: the files in walk order (ids 0..n), then the
        // variants.
        let mut heads = Vec::new();
        let mut files: Vec<FileRecord> = Vec::with_capacity(found.len() + variants.len());
        let cache_control = options.cache_control.as_deref();
        let record = |heads: &mut Vec<u8>,
                      body: Range<usize>,
                      content_type: String,
                      last_modified: Option<u64>,
                      coding: Option<encoding::Coding>,
                      vary: bool| {
            let content = arena.get(body.clone()).unwrap_or_default();
            let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(content));
            let facts = pages::FileFacts {
                content_type: &content_type,
                len: body.len(),
                last_modified,
                etag: &etag,
                content_encoding: coding.map(encoding::Coding::name),
                vary,
                cache_control,
            };
            let head_start = heads.len();
            let [full, partial, not_modified, multipart] = pages::write_file_heads(heads, &facts);
            let head = head_start..head_start + full;
            let partial_head = head.end..head.end + partial;
            let not_modified_head = partial_head.end..partial_head.end + not_modified;
            let multipart_head = not_modified_head.end..not_modified_head.end + multipart;
            FileRecord {
                body,
                head,
                partial_head,
                not_modified_head,
                multipart_head,
                etag: etag.into(),
                content_type: content_type.into(),
                last_modified,
                gzip: None,
                br: None,
            }
        };
        let has_variants: Vec<bool> = {
            let mut has = vec![false; found.len()];
            for v in &variants {
                has[v.of] = true;
            }
            has
        };
        for (i, file) in found.iter().enumerate() {
            let content_type = pages::content_type(&file.path);
            files.push(record(
                &mut heads,
                bodies[i].clone(),
                content_type,
                file.last_modified,
                None,
                has_variants[i],
            ));
        }
        for v in variants {
            let id = file_id(files.len(), root)?;
            let content_type = pages::content_type(&found[v.of].path);
            files.push(record(
                &mut heads,
                v.body,
                content_type,
                v.last_modified,
                Some(v.coding),
                true,
            ));
            if let Some(original) = files.get_mut(v.of) {
                match v.coding {
                    encoding::Coding::Gzip => original.gzip = Some(id),
                    encoding::Coding::Brotli => original.br = Some(id),
                }
            }
        }

        let tree_files = found.len();
        let mut index =
            HashMap::with_capacity_and_hasher(found.len() + dir_keys.len(), index_hasher());
        for (i, file) in found.into_iter().enumerate() {
            index.insert(
                file.key.into_bytes().into_boxed_slice(),
                Entry::File(file_id(i, root)?),
            );
        }
        let mut dirs = Vec::with_capacity(dir_keys.len());
        for key in dir_keys {
            let id = u32::try_from(dirs.len())
                .map(DirId)
                .map_err(|_| CacheError::TooLarge(root.to_path_buf()))?;
            let index_file = match index.get(format!("{key}/index.html").as_bytes()) {
                Some(Entry::File(file)) => Some(*file),
                _ => None,
            };
            dirs.push(percent_encode_path(&format!("{key}/")).into_boxed_str());
            index.insert(
                key.into_bytes().into_boxed_slice(),
                Entry::Dir {
                    index: index_file,
                    id,
                },
            );
        }

        let sums = sums::ArenaSums::new(&arena);
        Ok(ContentCache {
            sums,
            arena,
            heads,
            files,
            dirs,
            index,
            pages: Status::ALL.iter().map(|s| pages::status_page(*s)).collect(),
            report,
            tree_files,
        })
    }

    /// The variant of file `id` to send to a client whose `Accept-Encoding` is
    /// `accept_encoding`: brotli, then gzip, when the file has it and the client accepts it;
    /// otherwise `id` itself.
    pub fn negotiate(&self, id: FileId, accept_encoding: Option<&[u8]>) -> FileId {
        let (Some(record), Some(accept)) = (self.files.get(id.0 as usize), accept_encoding) else {
            return id;
        };
        for (variant, coding) in [
            (record.br, encoding::Coding::Brotli),
            (record.gzip, encoding::Coding::Gzip),
        ] {
            if let Some(variant) = variant
                && encoding::accepts(accept, coding)
            {
                return variant;
            }
        }
        id
    }

    /// Number of variants (gzip, brotli) held, on disk or built at load.
    pub fn variant_count(&self) -> usize {
        self.files.len() - self.tree_files
    }

    /// Resolves a normalized request path (see the module documentation). Its bytes: every
    /// cached name is UTF-8, so a path that is not finds nothing, with no check of its own.
    pub fn lookup(&self, path: &[u8]) -> Lookup {
        if !path.starts_with(b"/") {
            return Lookup::NotFound;
        }
        if let Some(dir) = path.strip_suffix(b"/") {
            return match self.index.get(dir) {
                Some(Entry::Dir {
                    index: Some(file), ..
                }) => Lookup::File(*file),
                Some(Entry::Dir { index: None, .. }) => Lookup::Forbidden,
                _ => Lookup::NotFound,
            };
        }
        match self.index.get(path) {
            Some(Entry::File(file)) => Lookup::File(*file),
            Some(Entry::Dir { id, .. }) => Lookup::RedirectToDir(*id),
            None => Lookup::NotFound,
        }
    }

    /// The file `id` names. An id from another cache gives an empty file rather than a panic.
    ///
    /// Inlined so that a caller pays only for the fields it reads: each response looks the
    /// file up twice (validators when answering, head and body when sending).
    #[inline]
    pub fn file(&self, id: FileId) -> CachedFile<'_> {
        let record = self.files.get(id.0 as usize);
        let heads = |range: fn(&FileRecord) -> &Range<usize>| {
            record
                .and_then(|r| self.heads.get(range(r).clone()))
                .unwrap_or_default()
        };
        CachedFile {
            head: heads(|r| &r.head),
            partial_head: heads(|r| &r.partial_head),
            not_modified_head: heads(|r| &r.not_modified_head),
            multipart_head: heads(|r| &r.multipart_head),
            body: record
                .and_then(|r| self.arena.get(r.body.clone()))
                .unwrap_or_default(),
            etag: record.map(|r| &*r.etag).unwrap_or_default(),
            last_modified: record.and_then(|r| r.last_modified),
            content_type: record.map(|r| &*r.content_type).unwrap_or_default(),
        }
    }

    /// The `Location` a redirect to directory `id` carries: its path with a trailing slash,
    /// percent-encoded.
    pub fn redirect_location(&self, id: DirId) -> &str {
        self.dirs.get(id.0 as usize).map(|s| &**s).unwrap_or("/")
    }

    /// The prebuilt page for `status`.
    pub fn status_page(&self, status: Status) -> (&[u8], &[u8]) {
        self.pages
            .get(status.index())
            .map(|p| (&*p.head, &*p.body))
            .unwrap_or_default()
    }

    /// Files of the tree (variants built at load not included).
    pub fn file_count(&self) -> usize {
        self.tree_files
    }

    /// Bytes of file content held (the arena).
    pub fn total_bytes(&self) -> usize {
        self.arena.len()
    }

    /// The RFC 1071 ones-complement sum (not complemented) of arena bytes `start..start + len`,
    /// taken as if `start` were even, in O(1) from sums built at load: smoltcp's
    /// `checksum::data` of those bytes. A range past the arena is cut at its end.
    pub fn arena_sum(&self, start: usize, len: usize) -> u16 {
        self.sums.range_sum(&self.arena, start, len)
    }

    /// Where `bytes` starts in the arena, if it is a slice of it (a body, or part of one).
    pub fn arena_offset(&self, bytes: &[u8]) -> Option<usize> {
        let start = (bytes.as_ptr() as usize).checked_sub(self.arena.as_ptr() as usize)?;
        (start + bytes.len() <= self.arena.len()).then_some(start)
    }

    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }
}

fn file_id(index: usize, root: &Path) -> Result<FileId, CacheError> {
    u32::try_from(index)
        .map(FileId)
        .map_err(|_| CacheError::TooLarge(root.to_path_buf()))
}

/// The lookup key of `path` under `root`: `/`-separated components with a leading `/`, or the
/// empty string for the root itself. `None` if a component is not UTF-8.
fn key_for(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let mut key = String::new();
    for component in relative.components() {
        key.push('/');
        key.push_str(component.as_os_str().to_str()?);
    }
    Some(key)
}

/// Percent-encodes everything in `path` that may not appear raw in a URI path (RFC 3986 §3.3:
/// unreserved, sub-delims, `:`, `@` and the `/` separators stay as they are).
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &byte in path.as_bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TempTree(pub PathBuf);

    impl TempTree {
        pub(crate) fn new(tag: &str) -> TempTree {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "sirocco-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempTree(path)
        }

        pub(crate) fn write(&self, relative: &str, content: &[u8]) {
            let path = self.0.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create parent");
            }
            std::fs::write(&path, content).expect("write file");
        }

        pub(crate) fn mkdir(&self, relative: &str) {
            std::fs::create_dir_all(self.0.join(relative)).expect("mkdir");
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn site() -> (TempTree, ContentCache) {
        let tree = TempTree::new("cache");
        tree.write("index.html", b"<h1>home</h1>\n");
        tree.write("style.css", b"body{}");
        tree.write("docs/index.html", b"docs");
        tree.write("docs/a b.txt", b"spaced");
        tree.write(".hidden", b"dot");
        tree.mkdir("empty");
        let cache = ContentCache::load(&tree.0).expect("load");
        (tree, cache)
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn loads_every_file_into_one_arena() {
        let (_tree, cache) = site();
        assert_eq!(cache.file_count(), 5);
        assert_eq!(cache.total_bytes(), 14 + 6 + 4 + 6 + 3);
        let Lookup::File(css) = cache.lookup(b"/style.css") else {
            panic!("style.css not found");
        };
        assert_eq!(cache.file(css).body, b"body{}");
        assert_eq!(cache.load_report(), &LoadReport::default());
    }

    #[test]
    fn head_bytes_are_exact() {
        let (tree, cache) = site();
        let Lookup::File(id) = cache.lookup(b"/style.css") else {
            panic!("style.css not found");
        };
        let file = cache.file(id);
        let mtime = std::fs::metadata(tree.0.join("style.css"))
            .and_then(|m| m.modified())
            .expect("mtime");
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(b"body{}"));
        let expected = format!(
            "HTTP/1.1 200 OK\r\nServer: sirocco\r\nContent-Type: text/css; charset=utf-8\r\n\
             Content-Length: 6\r\nLast-Modified: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n",
            httpdate::fmt_http_date(mtime)
        );
        assert_eq!(text(file.head), expected);
        assert_eq!(file.etag, etag);
        assert_eq!(file.etag.len(), 18);
        assert!(text(file.not_modified_head).starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(!text(file.not_modified_head).contains("Content-Length"));
        assert!(!text(file.partial_head).contains("Content-Length"));
    }

    #[test]
    fn directories_serve_index_redirect_or_forbid() {
        let (_tree, cache) = site();
        let Lookup::File(root_index) = cache.lookup(b"/") else {
            panic!("/ has no index");
        };
        assert_eq!(cache.file(root_index).body, b"<h1>home</h1>\n");
        assert!(matches!(cache.lookup(b"/docs/"), Lookup::File(_)));
        let Lookup::RedirectToDir(docs) = cache.lookup(b"/docs") else {
            panic!("/docs does not redirect");
        };
        assert_eq!(cache.redirect_location(docs), "/docs/");
        assert_eq!(cache.lookup(b"/empty/"), Lookup::Forbidden);
        assert!(matches!(cache.lookup(b"/empty"), Lookup::RedirectToDir(_)));
        assert_eq!(cache.lookup(b"/style.css/"), Lookup::NotFound);
        assert_eq!(cache.lookup(b"/nope"), Lookup::NotFound);
        assert_eq!(cache.lookup(b""), Lookup::NotFound);
        assert!(matches!(cache.lookup(b"/.hidden"), Lookup::File(_)));
        assert!(matches!(cache.lookup(b"/docs/a b.txt"), Lookup::File(_)));
    }

    #[test]
    fn not_found_page_is_prebuilt_html() {
        let (_tree, cache) = site();
        let (head, body) = cache.status_page(Status::NotFound);
        assert!(text(head).starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text(head).contains("Content-Type: text/html\r\n"));
        assert!(text(body).contains("<title>404 Not Found</title>"));
    }

    #[test]
    fn symlinks_inside_are_served_and_escaping_ones_refused() {
        let outside = TempTree::new("outside");
        outside.write("secret.txt", b"secret");
        let tree = TempTree::new("links");
        tree.write("real.txt", b"real");
        std::os::unix::fs::symlink(tree.0.join("real.txt"), tree.0.join("alias.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(outside.0.join("secret.txt"), tree.0.join("leak.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(&outside.0, tree.0.join("leakdir")).expect("symlink");
        std::os::unix::fs::symlink(tree.0.join("missing"), tree.0.join("dangling"))
            .expect("symlink");

        let cache = ContentCache::load(&tree.0).expect("load");
        let Lookup::File(alias) = cache.lookup(b"/alias.txt") else {
            panic!("in-root symlink not served");
        };
        assert_eq!(cache.file(alias).body, b"real");
        assert_eq!(cache.lookup(b"/leak.txt"), Lookup::NotFound);
        assert_eq!(cache.lookup(b"/leakdir/secret.txt"), Lookup::NotFound);
        let report = cache.load_report();
        assert_eq!(
            report.refused_symlinks,
            vec![tree.0.join("leak.txt"), tree.0.join("leakdir")]
        );
        assert_eq!(report.broken_symlinks, vec![tree.0.join("dangling")]);
    }

    #[test]
    fn missing_or_non_directory_root_is_a_clear_error() {
        let missing = std::env::temp_dir().join("sirocco-no-such-root-dir");
        let error = ContentCache::load(&missing).expect_err("missing root loaded");
        let message = error.to_string();
        assert!(message.contains("sirocco-no-such-root-dir"), "{message}");
        assert!(message.contains("does not exist"), "{message}");

        let tree = TempTree::new("notdir");
        tree.write("file", b"x");
        let error = ContentCache::load(&tree.0.join("file")).expect_err("file as root");
        assert!(error.to_string().contains("not a directory"));
    }

    #[test]
    fn a_tree_over_the_cache_limit_is_refused_with_the_sizes() {
        let (tree, _) = site();
        let limit = LoadOptions {
            max_bytes: Some(10),
            ..LoadOptions::default()
        };
        let error = ContentCache::load_with(&tree.0, &limit, &mut |_| {}).expect_err("loaded");
        let message = error.to_string();
        assert!(message.contains("needs 33 bytes"), "{message}");
        assert!(
            message.contains("limit of 10 bytes (--max-cache-bytes)"),
            "{message}"
        );
        let fits = LoadOptions {
            max_bytes: Some(33),
            ..LoadOptions::default()
        };
        let mut seen = Vec::new();
        let cache = ContentCache::load_with(&tree.0, &fits, &mut |p| seen.push(*p)).expect("fits");
        assert_eq!(cache.total_bytes(), 33);
        let last = seen.last().expect("progress reported");
        assert_eq!((last.files_done, last.files_total), (5, 5));
        assert_eq!((last.bytes_done, last.bytes_total), (33, 33));
    }

    #[test]
    fn arena_sums_cover_every_body_and_built_variant() {
        let tree = TempTree::new("sums");
        let text = "checksum me, ".repeat(400);
        tree.write("a.txt", text.as_bytes());
        tree.write("odd.bin", &[0xFF; 1001]);
        tree.write("zeros.bin", &[0; 777]);
        let options = LoadOptions {
            compress: true,
            ..LoadOptions::default()
        };
        let cache = ContentCache::load_with(&tree.0, &options, &mut |_| {}).expect("load");
        assert_eq!(cache.variant_count(), 1, "a.txt has a gzip variant");
        for record in &cache.files {
            let body = &cache.arena[record.body.clone()];
            for (from, to) in [(0, body.len()), (1, body.len()), (3, body.len() / 2)] {
                assert_eq!(
                    cache.arena_sum(record.body.start + from, to - from),
                    smoltcp::wire::checksum::data(&body[from..to]),
                    "{record:?} {from}..{to}"
                );
            }
        }
        let whole = smoltcp::wire::checksum::data(&cache.arena);
        assert_eq!(cache.arena_sum(0, cache.total_bytes()), whole);
    }

    #[test]
    fn redirect_locations_are_percent_encoded() {
        assert_eq!(percent_encode_path("/a b/é/"), "/a%20b/%C3%A9/");
        assert_eq!(percent_encode_path("/x?y#z/"), "/x%3Fy%23z/");
    }
}
