//! Downloading weights into a cache directory, checked against their SHA-256, never leaving a
//! partial file behind (torchvision's `load_state_dict_from_url(check_hash=True)`).

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
}

impl WeightsCache {
    /// A cache in `dir` (created on first download), with a progress bar on the terminal.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            progress: true,
        }
    }

    /// The cache named by `MOBILENET_BURN_CACHE`, else `mobilenet-burn` in the platform's cache
    /// directory (`~/.cache/mobilenet-burn` on Linux).
    ///
    /// # Errors
    ///
    /// [`Error::NoCacheDir`] if neither exists.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var_os(CACHE_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Ok(Self::new(dir)),
            _ => dirs::cache_dir()
                .map(|dir| Self::new(dir.join("mobilenet-burn")))
                .ok_or(Error::NoCacheDir),
        }
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

    /// The local path of the file at `url`, downloading it if it is not cached. The download
    /// goes to a temporary file in the cache directory, its SHA-256 must start with
    /// `sha256_prefix` (hex), and only then is it renamed into place.
    ///
    /// # Errors
    ///
    /// [`Error::Download`] for a connection failure, an HTTP error status or a transfer cut
    /// short; [`Error::HashMismatch`] for a corrupt file; [`Error::Io`] if the cache directory
    /// cannot be written. No partial file is left behind in any case.
    pub fn fetch_url(&self, url: &str, sha256_prefix: &str) -> Result<PathBuf, Error> {
        let name = url
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| download_error(url, "the URL names no file"))?;
        let target = self.dir.join(name);
        if target.is_file() {
            return Ok(target);
        }
        std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;

        let temporary = TemporaryFile(self.dir.join(format!(
            ".{name}.{}-{}.part",
            std::process::id(),
            TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
        )));
        let digest = self.download(url, &temporary.0)?;
        if !digest.starts_with(&sha256_prefix.to_ascii_lowercase()) {
            return Err(Error::HashMismatch {
                url: url.to_string(),
                expected: sha256_prefix.to_string(),
                found: digest,
            });
        }
        // Atomic on one file system; the temporary's guard then finds nothing to remove.
        std::fs::rename(&temporary.0, &target).map_err(io_error(&target))?;
        Ok(target)
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
        Ok(hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect())
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
