//! Reading torchvision checkpoints and reading and writing burn's own format.
//!
//! Loading is strict. Before anything is applied, the checkpoint's keys and shapes are compared
//! with the model's, in torchvision's naming (BatchNorm `weight`/`bias`, Linear weights
//! `[out, in]`); every missing key, unused key and shape mismatch is collected into one
//! [`Error::CheckpointMismatch`]. The only key allowed to go unused is BatchNorm's
//! `num_batches_tracked` counter, which inference does not need.
//!
//! Checkpoints as people save them are unwrapped first: the state dict may sit under a key
//! (`{"model": ...}` from torchvision's reference scripts, `{"state_dict": ...}` from
//! Lightning, with its `model.` prefix) or carry a prefix of its own (`module.` from
//! `nn.DataParallel`, `_orig_mod.` from `torch.compile`). Nested dictionaries read as dotted
//! keys, so both cases are a key prefix: the one under which most of the model's keys appear is
//! used, and everything outside it (optimizer state, epoch counters) is ignored.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::store::{
    BurnToPyTorchAdapter, BurnpackStore, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use burn::tensor::{FloatDType, Tensor};

use crate::detection::SsdLite;
use crate::error::io_error;
use crate::segmentation::{DeepLabV3, LrAspp};
use crate::{Error, MismatchReport, MobileNetV2, MobileNetV3, MobileNetV4, ShapeMismatch};

/// The BatchNorm counter torchvision saves and inference never reads.
const IGNORED_SUFFIX: &str = ".num_batches_tracked";

/// Names of the BatchNorm running statistics: state, not learned parameters.
const RUNNING_STATS: [&str; 2] = ["running_mean", "running_var"];

/// Parameter and buffer shapes, keyed by path.
pub(crate) type ShapeMap = BTreeMap<String, Vec<usize>>;

/// The model's `state_dict` as torchvision would list it: every key (buffers included, except
/// `num_batches_tracked`) with its shape in PyTorch's layout.
pub fn torchvision_state_dict_shapes<M: ModuleSnapshot>(model: &M) -> Vec<(String, Vec<usize>)> {
    shapes(model, true).into_iter().collect()
}

/// Number of learned parameters, counted as torchvision does (`sum(p.numel() for p in
/// model.parameters())`): BatchNorm running statistics excluded. burn's own `num_params` counts
/// them.
pub fn num_learnable_params<M: ModuleSnapshot>(model: &M) -> usize {
    model
        .collect(None, None, false)
        .iter()
        // The last segment of the path: a BatchNorm counted on its own has no parent path.
        .filter(|tensor| !RUNNING_STATS.contains(&tensor.name.rsplit('.').next().unwrap_or("")))
        .map(|tensor| tensor.shape.num_elements())
        .sum()
}

fn shapes<M: ModuleSnapshot>(model: &M, pytorch_naming: bool) -> ShapeMap {
    let adapter = pytorch_naming.then(|| Box::new(BurnToPyTorchAdapter) as _);
    model
        .collect(None, adapter, true)
        .into_iter()
        .map(|tensor| (tensor.name, tensor.shape.to_vec()))
        .collect()
}

/// The file formats a torchvision checkpoint comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `torch.save`, zip (PyTorch 1.6+) or legacy pickle.
    Pytorch,
    /// Hugging Face safetensors.
    Safetensors,
}

/// Tells the format from the first bytes: safetensors opens with an 8-byte little-endian
/// header length followed by `{`; everything else goes to the PyTorch reader, which knows the
/// zip, legacy and tar layouts and reports what it does not.
fn detect_format(path: &Path) -> Result<Format, Error> {
    let mut head = [0u8; 9];
    let mut file = File::open(path).map_err(io_error(path))?;
    let read = file.read(&mut head).map_err(io_error(path))?;
    if read < head.len() {
        return Err(unreadable(path, format!("only {read} bytes long")));
    }
    if head[8] == b'{' && u64::from_le_bytes(head[..8].try_into().unwrap_or_default()) > 1 {
        Ok(Format::Safetensors)
    } else {
        Ok(Format::Pytorch)
    }
}

fn unreadable(path: &Path, reason: impl ToString) -> Error {
    Error::UnreadableCheckpoint {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn pytorch_store(path: &Path) -> PytorchStore {
    PytorchStore::from_file(path)
        // torchvision's `classifier.0`/`classifier.3` are real positions: keep them.
        .map_indices_contiguous(false)
        .allow_partial(true)
        .validate(false)
}

fn safetensors_store(path: &Path) -> SafetensorsStore {
    SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true)
        .map_indices_contiguous(false)
        .allow_partial(true)
        .validate(false)
}

/// Loads a torchvision `state_dict` (`.pth` zip or legacy, or `.safetensors`), bare or wrapped
/// (see the module's documentation), into `model`.
pub(crate) fn load_torchvision<M: ModuleSnapshot>(model: M, path: &Path) -> Result<M, Error> {
    let expected = shapes(&model, true);
    match detect_format(path)? {
        Format::Pytorch => {
            let (store, found) = unwrapped(pytorch_store(path), &expected, path, |store, from| {
                store.with_key_remapping(from, "")
            })?;
            load_checked(model, store, path, expected, found, true)
        }
        Format::Safetensors => {
            let (store, found) =
                unwrapped(safetensors_store(path), &expected, path, |store, from| {
                    store.with_key_remapping(from, "")
                })?;
            load_checked(model, store, path, expected, found, true)
        }
    }
}

/// The keys and shapes of the state dict a torchvision checkpoint holds for `model`, unwrapped,
/// in PyTorch's naming and layout.
pub(crate) fn torchvision_checkpoint_shapes<M: ModuleSnapshot>(
    model: &M,
    path: &Path,
) -> Result<ShapeMap, Error> {
    let expected = shapes(model, true);
    Ok(match detect_format(path)? {
        Format::Pytorch => unwrapped(pytorch_store(path), &expected, path, |store, _| store)?.1,
        Format::Safetensors => {
            unwrapped(safetensors_store(path), &expected, path, |store, _| store)?.1
        }
    })
}

/// Reads `store`'s keys once and unwraps the state dict for `expected`: the keys under the
/// prefix found (stripped; keys outside it dropped), and the store with `remap(store, pattern)`
/// applied when there is a prefix. A bare state dict keeps the store, and the tensors it read.
fn unwrapped<S: ModuleStore>(
    mut store: S,
    expected: &ShapeMap,
    path: &Path,
    remap: impl FnOnce(S, &str) -> S,
) -> Result<(S, ShapeMap), Error> {
    let stored = stored_shapes(&mut store, path)?;
    let prefix = state_dict_prefix(expected, &stored);
    let found = stored
        .into_iter()
        .filter_map(|(key, shape)| Some((key.strip_prefix(prefix.as_str())?.to_string(), shape)))
        .collect();
    let store = match prefix_pattern(&prefix) {
        Some(pattern) => remap(store, &pattern),
        None => store,
    };
    Ok((store, found))
}

/// The key prefix (empty, or ending in `.`) under which most of `expected`'s keys appear in
/// `stored`; the shortest among equals, so a bare state dict is read as it is.
fn state_dict_prefix(expected: &ShapeMap, stored: &ShapeMap) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for key in stored.keys() {
        let boundaries = std::iter::once(0).chain(key.match_indices('.').map(|(i, _)| i + 1));
        for start in boundaries {
            if expected.contains_key(&key[start..]) {
                *counts.entry(&key[..start]).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.len().cmp(&a.0.len())))
        .map(|(prefix, _)| prefix.to_string())
        .unwrap_or_default()
}

/// A regular expression matching `prefix` at the start of a key (`None` for no prefix); the
/// characters regular expressions give a meaning are escaped.
fn prefix_pattern(prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        return None;
    }
    let mut pattern = String::from("^");
    for c in prefix.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    Some(pattern)
}

/// A hint for a checkpoint in which none of the model's keys were found: its top-level keys.
fn layout_hint(stored: &ShapeMap) -> String {
    let top: std::collections::BTreeSet<&str> = stored
        .keys()
        .map(|key| key.split('.').next().unwrap_or(key))
        .collect();
    let shown: Vec<&str> = top.iter().take(12).copied().collect();
    format!(
        "none of the model's keys appear in the checkpoint, bare or under any prefix; its \
         top-level keys are {shown:?}{} (another architecture, width or variant?)",
        if top.len() > shown.len() { ", ..." } else { "" }
    )
}

fn stored_shapes<S: ModuleStore>(store: &mut S, path: &Path) -> Result<ShapeMap, Error> {
    Ok(store
        .get_all_tensors()
        .map_err(|error| unreadable(path, error))?
        .iter()
        .map(|(key, tensor)| (key.clone(), tensor.shape.to_vec()))
        .collect())
}

/// Loads weights saved by [`save_burnpack`].
pub(crate) fn load_burnpack<M: ModuleSnapshot>(model: M, path: &Path) -> Result<M, Error> {
    if !path.exists() {
        return Err(io_error(path)(std::io::ErrorKind::NotFound.into()));
    }
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true)
        .validate(false);
    let found = stored_shapes(&mut store, path)?;
    let expected = shapes(&model, false);
    load_checked(model, store, path, expected, found, false)
}

/// Compares the `expected` keys and shapes with those `found` in the store, then applies.
/// `pytorch_naming` says which naming the keys follow.
fn load_checked<M: ModuleSnapshot, S: ModuleStore>(
    mut model: M,
    mut store: S,
    path: &Path,
    expected: ShapeMap,
    found: ShapeMap,
    pytorch_naming: bool,
) -> Result<M, Error> {
    let mut report = compare(&expected, &found);
    if pytorch_naming && only_the_classifier_differs(&report) {
        report.other.push(CLASSIFIER_HINT.to_string());
    }
    if !expected.is_empty() && expected.keys().all(|key| !found.contains_key(key)) {
        // No prefix was found either, so `found` is everything the file holds.
        report.other.push(layout_hint(&found));
    }
    if !report.is_empty() {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            report,
        });
    }

    let dtype = float_dtype(&model);
    let result = model
        .load_from(&mut store)
        .map_err(|error| unreadable(path, error))?;
    // burn keeps a checkpoint's dtype (float16, bfloat16) in the parameters it loads; the model
    // computes in its own.
    if let Some(dtype) = dtype {
        model = model.map(&mut CastFloats(dtype));
    }
    let report = MismatchReport {
        missing: result.missing.into_iter().map(|(key, _)| key).collect(),
        other: result.errors.iter().map(ToString::to_string).collect(),
        ..MismatchReport::default()
    };
    if report.is_empty() {
        Ok(model)
    } else {
        Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            report,
        })
    }
}

/// The dtype of the model's first float parameter (they share one until something loads).
fn float_dtype<M: Module>(model: &M) -> Option<FloatDType> {
    struct First(Option<FloatDType>);
    impl ModuleVisitor for First {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let dtype = param.val().dtype();
            if self.0.is_none() && dtype.is_float() {
                self.0 = Some(dtype.into());
            }
        }
    }
    let mut first = First(None);
    model.visit(&mut first);
    first.0
}

/// Casts every float parameter and buffer that has another dtype to the given one.
struct CastFloats(FloatDType);

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let target = self.0;
        let dtype = param.val().dtype();
        if !dtype.is_float() || FloatDType::from(dtype) == target {
            return param;
        }
        param.map(|tensor| tensor.cast(target))
    }
}

/// Said when a classifier's checkpoint has another number of classes than the model.
const CLASSIFIER_HINT: &str = "only the classifier's shapes differ (a checkpoint with another \
    number of classes?): `load_torchvision_backbone` loads everything else and re-initializes \
    the output layer, or load into a model of the checkpoint's class count and call \
    `reset_classifier`";

fn only_the_classifier_differs(report: &MismatchReport) -> bool {
    !report.shape_mismatches.is_empty()
        && report.missing.is_empty()
        && report.unused.is_empty()
        && report
            .shape_mismatches
            .iter()
            .all(|mismatch| mismatch.key.starts_with("classifier."))
}

/// Every difference between the model's keys and shapes and the checkpoint's.
fn compare(expected: &ShapeMap, found: &ShapeMap) -> MismatchReport {
    let mut report = MismatchReport::default();
    for (key, expected_shape) in expected {
        match found.get(key) {
            None => report.missing.push(key.clone()),
            Some(found_shape) if found_shape != expected_shape => {
                report.shape_mismatches.push(ShapeMismatch {
                    key: key.clone(),
                    expected: expected_shape.clone(),
                    found: found_shape.clone(),
                })
            }
            Some(_) => {}
        }
    }
    report.unused = found
        .keys()
        .filter(|key| !expected.contains_key(*key) && !key.ends_with(IGNORED_SUFFIX))
        .cloned()
        .collect();
    report
}

/// `model` with the running-statistics updates of its training forwards applied: burn keeps
/// them pending per thread until `valid()`, `train()` or the next training forward on that
/// thread, and a snapshot reads the applied value. `valid()` applies them (in the shared state,
/// so `model` sees them too) and costs no copy of the weights.
pub(crate) fn synchronized<M: burn::module::Module>(model: &M) -> M {
    model.valid()
}

/// Writes `model` in burn's burnpack format, atomically (see [`write_atomically`]).
pub(crate) fn save_burnpack<M: ModuleSnapshot>(model: &M, path: &Path) -> Result<(), Error> {
    write_atomically(path, |temporary| {
        let mut store = BurnpackStore::from_file(temporary)
            .auto_extension(false)
            .overwrite(true);
        model
            .save_into(&mut store)
            .map_err(|error| error.to_string())
    })
}

/// Writes `model` as a torchvision `state_dict` in `.safetensors`: PyTorch's keys
/// (BatchNorm `weight`/`bias`), Linear weights as `[out, in]`, atomically (see
/// [`write_atomically`]). BatchNorm's `num_batches_tracked` counters are not written: burn does
/// not count batches, and PyTorch's `BatchNorm2d` fills a missing counter in when it loads.
pub(crate) fn save_torchvision<M: ModuleSnapshot>(model: &M, path: &Path) -> Result<(), Error> {
    write_atomically(path, |temporary| {
        let mut store = SafetensorsStore::from_file(temporary)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .overwrite(true);
        model
            .save_into(&mut store)
            .map_err(|error| error.to_string())
    })
}

/// Runs `write` on a temporary file beside `path` and renames it over `path` only once
/// complete, so that `path` never holds a half-written file; the temporary is removed on failure.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), Error> {
    let temporary = temporary_path(path);
    let written = write(&temporary)
        .and_then(|()| std::fs::rename(&temporary, path).map_err(|error| error.to_string()));
    if written.is_err() {
        // Best effort: the temporary may not exist if the store failed before creating it.
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(|reason| Error::Save {
        path: path.to_path_buf(),
        reason,
    })
}

/// `dir/.name.tmp-<pid>` beside `path`, so that the final rename stays on one file system.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The loading and saving methods of a model type, written once for both MobileNets.
macro_rules! checkpoint_methods {
    ($model:ident, import: $import:literal, config: $config:literal) => {
        impl $model {
            /// Loads a torchvision `state_dict`: a `.pth` file (zip, or the legacy format of
            /// PyTorch before 1.6) or a `.safetensors` file, as saved by
            /// `torch.save(model.state_dict(), path)`, also wrapped as people save it (the
            /// reference scripts' `{"model": ...}`, Lightning's `state_dict`, `module.` or
            /// `_orig_mod.` prefixes) and in float16 or bfloat16 (cast to the model's dtype).
            ///
            /// ```no_run
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            #[doc = concat!("let model = ", $config, ".init(&Device::flex())")]
            ///     .load_torchvision("checkpoint.pth")?;
            /// # Ok::<(), mobilenet_burn::Error>(())
            /// ```
            ///
            /// # Errors
            ///
            /// - [`Error::Io`] if the file cannot be opened;
            /// - [`Error::UnreadableCheckpoint`] if it is truncated, garbage or of another format;
            /// - [`Error::CheckpointMismatch`] listing every missing key, unused key and shape
            ///   mismatch, for example when a checkpoint of another width meets this model.
            pub fn load_torchvision(self, path: impl AsRef<Path>) -> Result<Self, Error> {
                load_torchvision(self, path.as_ref())
            }

            /// Saves the weights in burn's burnpack format. The file appears only once
            /// complete: it is written beside `path` and renamed.
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            /// let device = Device::flex();
            /// let path = std::env::temp_dir().join(format!("doc-{}.bpk", std::process::id()));
            #[doc = concat!("let model = ", $config, ".init(&device);")]
            /// model.save_burnpack(&path)?;
            #[doc = concat!("let again = ", $config, ".init(&device).load_burnpack(&path)?;")]
            /// assert_eq!(again.num_learnable_params(), model.num_learnable_params());
            /// # std::fs::remove_file(&path).ok();
            /// # Ok::<(), mobilenet_burn::Error>(())
            /// ```
            ///
            /// # Errors
            ///
            /// [`Error::Save`] if the file cannot be written; nothing is left behind.
            pub fn save_burnpack(&self, path: impl AsRef<Path>) -> Result<(), Error> {
                save_burnpack(&synchronized(self), path.as_ref())
            }

            /// Loads weights saved by `save_burnpack` into a model of the same configuration;
            /// see [`save_burnpack`](Self::save_burnpack) for an example.
            ///
            /// # Errors
            ///
            /// As [`load_torchvision`](Self::load_torchvision).
            ///
            /// ```
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            /// let device = Device::flex();
            /// let missing = std::env::temp_dir().join("no-such-file.bpk");
            #[doc = concat!("let error = ", $config, ".init(&device).load_burnpack(&missing).unwrap_err();")]
            /// assert!(error.to_string().contains("no-such-file.bpk"));
            /// ```
            pub fn load_burnpack(self, path: impl AsRef<Path>) -> Result<Self, Error> {
                load_burnpack(self, path.as_ref())
            }

            /// Number of learned parameters as torchvision counts them (BatchNorm running
            /// statistics excluded; burn's `num_params` includes them).
            ///
            /// ```
            /// use burn::module::Module;
            /// use burn::tensor::Device;
            #[doc = concat!("use ", $import, ";")]
            ///
            #[doc = concat!("let model = ", $config, ".init(&Device::flex());")]
            /// assert!(model.num_learnable_params() < model.num_params());
            /// ```
            pub fn num_learnable_params(&self) -> usize {
                num_learnable_params(self)
            }
        }
    };
}

checkpoint_methods!(
    MobileNetV2,
    import: "mobilenet_burn::MobileNetV2Config",
    config: "MobileNetV2Config::new().with_width_mult(0.25)"
);
checkpoint_methods!(
    MobileNetV3,
    import: "mobilenet_burn::MobileNetV3Config",
    config: "MobileNetV3Config::small().with_width_mult(0.25)"
);
checkpoint_methods!(
    SsdLite,
    import: "mobilenet_burn::detection::SsdLiteConfig",
    config: "SsdLiteConfig::mobilenet_v3_large(3)"
);
checkpoint_methods!(
    MobileNetV4,
    import: "mobilenet_burn::MobileNetV4Config",
    config: "MobileNetV4Config::conv_small()"
);
checkpoint_methods!(
    LrAspp,
    import: "mobilenet_burn::segmentation::LrAsppConfig",
    config: "LrAsppConfig::mobilenet_v3_small(3)"
);
checkpoint_methods!(
    DeepLabV3,
    import: "mobilenet_burn::segmentation::DeepLabV3Config",
    config: "DeepLabV3Config::mobilenet_v3_large(3).with_aspp_channels(8)"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &[usize])]) -> ShapeMap {
        entries
            .iter()
            .map(|(key, shape)| (key.to_string(), shape.to_vec()))
            .collect()
    }

    #[cfg(feature = "flex")]
    #[test]
    fn running_statistics_are_not_counted_at_any_depth() {
        let device = burn::tensor::Device::flex();
        // On its own a BatchNorm's statistics have no parent path: `running_mean`, not
        // `x.running_mean`. Only gamma and beta are learned.
        let norm = burn::nn::BatchNormConfig::new(7).init(&device);
        assert_eq!(num_learnable_params(&norm), 14);
        assert_eq!(num_learnable_params(&Some(norm)), 14);
        let block = crate::Conv2dNormActivationConfig::new(3, 7).init(&device);
        assert_eq!(num_learnable_params(&block), 3 * 7 * 9 + 14);
    }

    #[test]
    fn compare_lists_every_problem() {
        let expected = map(&[("a.weight", &[2, 3]), ("b.weight", &[4]), ("c.bias", &[1])]);
        let found = map(&[
            ("a.weight", &[2, 4]),
            ("c.bias", &[1]),
            ("d.weight", &[5]),
            ("e.num_batches_tracked", &[]),
        ]);
        let report = compare(&expected, &found);
        assert_eq!(report.missing, vec!["b.weight"]);
        assert_eq!(report.unused, vec!["d.weight"]);
        assert_eq!(
            report.shape_mismatches,
            vec![ShapeMismatch {
                key: "a.weight".into(),
                expected: vec![2, 3],
                found: vec![2, 4]
            }]
        );
    }

    #[test]
    fn temporary_file_sits_beside_the_target() {
        let temporary = temporary_path(Path::new("/some/dir/model.bpk"));
        assert_eq!(temporary.parent(), Some(Path::new("/some/dir")));
        assert!(temporary.to_string_lossy().contains(".model.bpk.tmp-"));
    }
}
