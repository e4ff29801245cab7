//! Downloading weights into a cache directory, checked against their SHA-256, never leaving a
//! partial file behind (torchvision's `load_state_dict_from_url(check_hash=True)`). PyTorch
//! hub's cache is looked in first, an offline switch keeps the network untouched, and the
//! proxy environment variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) are
//! honoured.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::weights::WeightsInfo;
use crate::Error;
use crate::error::io_error;

/// The environment variable that overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "MOBILENET_BURN_CACHE";

/// The environment variable that, set to `1` (or `true`, `yes`, `on`), forbids downloads:
/// weights must already be in a cache (as `HF_HUB_OFFLINE` for Hugging Face's hub).
pub const OFFLINE_ENV: &str = "MOBILENET_BURN_OFFLINE";

/// Bytes read from the network per write.
const CHUNK_SIZE: usize = 1 << 16;

/// Distinguishes temporary files of threads of one process.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of downloaded weights files, named as in their URLs.
///
/// A file is only ever placed there by renaming a complete, verified download, so a cache hit
/// is used as is, without a network request. Two processes downloading the same weights at
/// once each write their own temporary file and both renames leave a valid file.
#[derive(Debug, Clone)]
pub struct WeightsCache {
    dir: PathBuf,
    progress: bool,
    torch_hub: Option<PathBuf>,
    offline: bool,
}

/// PyTorch hub's checkpoint directory, where `torchvision` saves the same files:
/// `$TORCH_HOME/hub/checkpoints`, with `TORCH_HOME` defaulting to `$XDG_CACHE_HOME/torch`, then
/// `~/.cache/torch` (torch's `hub.get_dir()`). `None` without a home directory.
pub fn torch_hub_checkpoints() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let torch_home = match var("TORCH_HOME") {
        Some(home) => PathBuf::from(home),
        None => match var("XDG_CACHE_HOME") {
            Some(cache) => PathBuf::from(cache).join("torch"),
            None => dirs::home_dir()?.join(".cache").join("torch"),
        },
    };
    Some(torch_home.join("hub").join("checkpoints"))
}

/// Whether [`OFFLINE_ENV`] is set to a true value.
fn offline_from_env() -> bool {
    std::env::var(OFFLINE_ENV).is_ok_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl WeightsCache {
    /// A cache in `dir` (created on first download), with a progress bar on the terminal.
    ///
    /// It looks nowhere else and may download; see [`with_torch_hub`](Self::with_torch_hub)
    /// and [`offline`](Self::offline), which [`from_env`](Self::from_env) sets from the
    /// environment.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            progress: true,
            torch_hub: None,
            offline: false,
        }
    }

    /// The cache named by `MOBILENET_BURN_CACHE`, else `mobilenet-burn` in the platform's cache
    /// directory (`~/.cache/mobilenet-burn` on Linux); PyTorch hub's cache
    /// ([`torch_hub_checkpoints`]) looked in too; offline if [`OFFLINE_ENV`] says so.
    ///
    /// # Errors
    ///
    /// [`Error::NoCacheDir`] if neither exists.
    pub fn from_env() -> Result<Self, Error> {
        let cache = match std::env::var_os(CACHE_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::new(dir),
            _ => dirs::cache_dir()
                .map(|dir| Self::new(dir.join("mobilenet-burn")))
                .ok_or(Error::NoCacheDir)?,
        };
        Ok(cache
            .with_torch_hub(torch_hub_checkpoints())
            .offline(offline_from_env()))
    }

    /// Also looks for weights in `dir`, PyTorch hub's checkpoint directory (or not, with
    /// `None`): a file there is used in place, without copying, if its SHA-256 matches, and
    /// passed over otherwise (torch's cache is never written to).
    pub fn with_torch_hub(mut self, dir: Option<PathBuf>) -> Self {
        self.torch_hub = dir;
        self
    }

    /// Forbids (`true`) or allows downloads. Offline, a file in neither cache is an
    /// [`Error::Offline`] that says where to place it.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// PyTorch hub's checkpoint directory, if it is looked in.
    pub fn torch_hub(&self) -> Option<&Path> {
        self.torch_hub.as_deref()
    }

    /// Whether downloads are forbidden.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Shows (the default) or hides the download progress bar. It is hidden anyway when
    /// standard error is not a terminal.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local path of a weights entry, downloading and verifying it if it is not cached.
    ///
    /// # Errors
    ///
    /// As [`WeightsCache::fetch_url`].
    pub fn fetch(&self, weights: &WeightsInfo) -> Result<PathBuf, Error> {
        self.fetch_url(weights.url, weights.sha256_prefix)
    }

    /// The local path of the file at `url`, verified: the cached file (its hash checked),
    /// else PyTorch hub's copy if its hash matches, else a download. The download goes to a temporary file in the cache
    /// directory, its SHA-256 must start with `sha256_prefix` (hex), and only then is it
    /// renamed into place.
    ///
    /// # Errors
    ///
    /// [`Error::Offline`] when offline and the file is in no cache; [`Error::Download`] for a
    /// connection failure, an HTTP error status or a transfer cut short (saying where to place
    /// the file instead); [`Error::HashMismatch`] for a corrupt download, [`Error::WrongFile`] for
    /// a cached file whose hash differs; [`Error::Io`] if the cache
    /// directory cannot be written. No partial file, and no cache directory created for a
    /// download that failed, is left behind in any case.
    pub fn fetch_url(&self, url: &str, sha256_prefix: &str) -> Result<PathBuf, Error> {
        let name = url
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| download_error(url, "the URL names no file"))?;
        self.fetch_url_as(url, name, Some(sha256_prefix))
    }

    /// As [`fetch_url`](Self::fetch_url), cached under `name` rather than the URL's last
    /// segment (Hugging Face names every file `model.safetensors`), and with the hash check
    /// only when `sha256_prefix` is given. Without one, a cached or downloaded file is returned
    /// unchecked (the caller checks it otherwise: [`MobileNetV4::pretrained`] loads it
    /// strictly, every key and shape), and PyTorch hub's directory is not searched.
    ///
    /// [`MobileNetV4::pretrained`]: crate::MobileNetV4::pretrained
    ///
    /// # Errors
    ///
    /// As [`fetch_url`](Self::fetch_url); [`Error::Download`] for a `name` that is empty or
    /// not a plain file name.
    ///
    /// ```
    /// use mobilenet_burn::pretrained::WeightsCache;
    ///
    /// let dir = std::env::temp_dir().join(format!("fetch-as-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// std::fs::write(dir.join("mine.safetensors"), b"cached").unwrap();
    /// let cache = WeightsCache::new(&dir).offline(true);
    /// // A cached file under the name is found without the network.
    /// let path = cache.fetch_url_as("https://example.invalid/model.safetensors", "mine.safetensors", None).unwrap();
    /// assert_eq!(path, dir.join("mine.safetensors"));
    /// // With a hash prefix, it must match.
    /// assert!(cache.fetch_url_as("https://example.invalid/model.safetensors", "mine.safetensors", Some("00ff")).is_err());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn fetch_url_as(
        &self,
        url: &str,
        name: &str,
        sha256_prefix: Option<&str>,
    ) -> Result<PathBuf, Error> {
        let plain = Path::new(name).file_name().is_some_and(|file| file == name);
        if !plain {
            return Err(download_error(
                url,
                format!("`{name}` is not a plain file name"),
            ));
        }
        let target = self.dir.join(name);
        if target.is_file() {
            // A cached file is trusted no more than a downloaded one: a truncated copy or
            // another file under the name is reported, not loaded.
            if let Some(prefix) = sha256_prefix {
                crate::pretrained::verify_file(&target, name, prefix)?;
            }
            return Ok(target);
        }
        if let Some((hub, prefix)) = self.torch_hub.as_ref().zip(sha256_prefix) {
            let copy = hub.join(name);
            // Another file under the name there (or an unreadable one) is skipped, not an error.
            if copy.is_file() && crate::pretrained::verify_file(&copy, name, prefix).is_ok() {
                return Ok(copy);
            }
        }
        if self.offline {
            return Err(Error::Offline {
                url: url.to_string(),
                file: name.to_string(),
                searched: std::iter::once(self.dir.clone())
                    .chain(self.torch_hub.clone())
                    .collect(),
            });
        }
        let created = create_dir_all(&self.dir)?;
        let result = self.download_verified(url, name, &target, sha256_prefix);
        if result.is_err()
            && let Some(top) = created
        {
            // Best effort, and only directories this call created and left empty.
            for dir in self.dir.ancestors() {
                if std::fs::remove_dir(dir).is_err() || dir == top {
                    break;
                }
            }
        }
        result.map_err(|error| match error {
            Error::Download { url, reason } => Error::Download {
                reason: format!(
                    "{reason}; to do without the network, place {name} in {} (the directory \
                     {CACHE_DIR_ENV} names) or load a copy with `from_file`",
                    self.dir.display()
                ),
                url,
            },
            other => other,
        })
    }

    /// Downloads `url` to a temporary file beside `target`, checks its hash and renames it.
    fn download_verified(
        &self,
        url: &str,
        name: &str,
        target: &Path,
        sha256_prefix: Option<&str>,
    ) -> Result<PathBuf, Error> {
        let temporary = TemporaryFile(self.dir.join(format!(
            ".{name}.{}-{}.part",
            std::process::id(),
            TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
        )));
        let digest = self.download(url, &temporary.0)?;
        if let Some(prefix) = sha256_prefix
            && !digest.starts_with(&prefix.to_ascii_lowercase())
        {
            return Err(Error::HashMismatch {
                url: url.to_string(),
                expected: prefix.to_string(),
                found: digest,
            });
        }
        // Atomic on one file system; the temporary's guard then finds nothing to remove.
        std::fs::rename(&temporary.0, target).map_err(io_error(target))?;
        Ok(target.to_path_buf())
    }

    /// Streams `url` into `path`, returning the hex SHA-256 of what arrived.
    fn download(&self, url: &str, path: &Path) -> Result<String, Error> {
        let response = ureq::get(url).call().map_err(|error| match error {
            ureq::Error::StatusCode(status) => download_error(url, format!("HTTP status {status}")),
            other => download_error(url, other),
        })?;
        let expected_len = response
            .headers()
            .get("content-length")
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        let mut body = response.into_body().into_reader();
        let mut file = File::create(path).map_err(io_error(path))?;
        let progress = self.progress_bar(expected_len, url);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut buffer = vec![0u8; CHUNK_SIZE];
        let cut_short = |received: u64, reason: String| {
            let total = expected_len.map_or("?".to_string(), |len| len.to_string());
            download_error(
                url,
                format!("transfer cut short after {received} of {total} bytes: {reason}"),
            )
        };
        loop {
            let read = body
                .read(&mut buffer)
                .map_err(|error| cut_short(received, error.to_string()))?;
            if read == 0 {
                break;
            }
            file.write_all(&buffer[..read]).map_err(io_error(path))?;
            hasher.update(&buffer[..read]);
            received += read as u64;
            progress.set_position(received);
        }
        progress.finish_and_clear();
        if let Some(len) = expected_len.filter(|&len| len != received) {
            return Err(cut_short(received, format!("expected {len} bytes")));
        }
        file.sync_all().map_err(io_error(path))?;
        Ok(hex(&hasher.finalize()))
    }

    fn progress_bar(&self, len: Option<u64>, url: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = match len {
            Some(len) => ProgressBar::new(len),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(format!("downloading {url}"));
        bar
    }
}

/// Creates `dir` and its missing parents; the topmost directory created, if any.
fn create_dir_all(dir: &Path) -> Result<Option<PathBuf>, Error> {
    let top = dir
        .ancestors()
        .take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.exists())
        .last()
        .map(Path::to_path_buf);
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    Ok(top)
}

/// The hex SHA-256 of a file's contents.
pub(crate) fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_SIZE];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn download_error(url: &str, reason: impl ToString) -> Error {
    Error::Download {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// Removes its file when dropped: on every error path, and harmlessly after the rename.
struct TemporaryFile(PathBuf);

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        // Best effort: the file may never have been created.
        let _ = std::fs::remove_file(&self.0);
    }
}
