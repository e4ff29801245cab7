//! The crate's one error type.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong when configuring a model, checking its input, or loading and
/// saving its weights.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is outside the range the architecture accepts.
    #[error("invalid configuration: `{field}` is {value}, but {expected}")]
    InvalidConfig {
        /// The config field, for example `width_mult`.
        field: &'static str,
        /// The value found, formatted.
        value: String,
        /// What would have been valid.
        expected: String,
    },

    /// An input tensor does not have the shape the model takes.
    #[error("invalid input of shape {shape:?}: {expected}")]
    InvalidInput {
        /// The shape found, `[batch, channels, height, width]`.
        shape: Vec<usize>,
        /// What would have been valid.
        expected: String,
    },

    /// `forward_intermediates` was asked for a tap that `feature_info` does not list.
    #[error("no feature tap {index}: the model has {taps} (indices 0..{taps})")]
    NoSuchFeatureTap {
        /// The index asked for.
        index: usize,
        /// How many taps there are.
        taps: usize,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file exists but is not a checkpoint this crate can read (truncated, garbage, or an
    /// unknown format).
    #[error("{} is not a readable checkpoint: {reason}", path.display())]
    UnreadableCheckpoint {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        reason: String,
    },

    /// A checkpoint was read but its keys or shapes do not match the model. Every problem is
    /// listed, not just the first.
    #[error("{} does not match the model:\n{report}", path.display())]
    CheckpointMismatch {
        /// The file.
        path: PathBuf,
        /// Every missing key, unused key and shape mismatch.
        report: MismatchReport,
    },

    /// An image file could not be decoded.
    #[error("cannot decode image {}: {reason}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },

    /// A download failed: no connection, an HTTP error status, or a transfer cut short.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong, with the HTTP status where there was one.
        reason: String,
    },

    /// A downloaded file's SHA-256 does not start with the digits its name promises.
    #[error("download of {url} is corrupt: SHA-256 {found} does not start with {expected}")]
    HashMismatch {
        /// The URL.
        url: String,
        /// The expected prefix of the hex digest.
        expected: String,
        /// The digest of what arrived.
        found: String,
    },

    /// Downloads are switched off (`MOBILENET_BURN_OFFLINE`) and the weights are in no cache.
    #[error(
        "offline (MOBILENET_BURN_OFFLINE is set) and {file} is in none of {}: place the file \
         from {url} in the first, or load a copy of it with `from_file`",
        display_paths(searched)
    )]
    Offline {
        /// The URL the file would be downloaded from.
        url: String,
        /// The file's name.
        file: String,
        /// The directories looked in: the crate's cache, then PyTorch hub's, if any.
        searched: Vec<PathBuf>,
    },

    /// A local weights file is not the file its entry names: its SHA-256 does not start with
    /// the entry's digits. `from_file_unverified` loads files of one's own.
    #[error(
        "{} is not {file}: its SHA-256 {found} does not start with {expected} (if it is a \
         cached download, delete it to download again; for weights of your own, use \
         `from_file_unverified`)",
        path.display()
    )]
    WrongFile {
        /// The file given.
        path: PathBuf,
        /// The name of the file the weights entry expects.
        file: String,
        /// The expected prefix of the hex digest.
        expected: String,
        /// The file's digest.
        found: String,
    },

    /// No cache directory for downloaded weights: neither the environment variable
    /// `MOBILENET_BURN_CACHE` nor the platform's cache directory is set.
    #[error("no cache directory for weights: set MOBILENET_BURN_CACHE")]
    NoCacheDir,

    /// A directory is not an image-folder dataset (no class folders, or a class without
    /// images).
    #[error("{} is not an image-folder dataset: {reason}", path.display())]
    Dataset {
        /// The dataset's root directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },

    /// A model or a picture could not be written.
    #[error("cannot save {}: {reason}", path.display())]
    Save {
        /// The destination file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// `[a, b]` for paths, as a person reads them.
fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    format!("[{}]", shown.join(", "))
}

/// Wraps an I/O failure on `path` as [`Error::Io`]: `.map_err(io_error(path))`.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// A parameter whose shape in the checkpoint differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The parameter's key, as in the checkpoint (`features.0.0.weight`).
    pub key: String,
    /// The model's shape.
    pub expected: Vec<usize>,
    /// The checkpoint's shape.
    pub found: Vec<usize>,
}

/// Every way in which a checkpoint failed to match a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MismatchReport {
    /// Keys the model has and the checkpoint lacks.
    pub missing: Vec<String>,
    /// Keys the checkpoint has and the model lacks.
    pub unused: Vec<String>,
    /// Keys present in both with different shapes.
    pub shape_mismatches: Vec<ShapeMismatch>,
    /// Other per-tensor problems (a data type that cannot be converted, for example).
    pub other: Vec<String>,
}

impl MismatchReport {
    /// Whether the checkpoint matched: nothing missing, unused or mismatched.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unused.is_empty()
            && self.shape_mismatches.is_empty()
            && self.other.is_empty()
    }
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for mismatch in &self.shape_mismatches {
            writeln!(
                f,
                "  shape mismatch: {}: model expects {:?}, checkpoint has {:?}",
                mismatch.key, mismatch.expected, mismatch.found
            )?;
        }
        for key in &self.missing {
            writeln!(f, "  missing from checkpoint: {key}")?;
        }
        for key in &self.unused {
            writeln!(f, "  not in model: {key}")?;
        }
        for problem in &self.other {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}
