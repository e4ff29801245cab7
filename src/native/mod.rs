//! Where the layers meet the native CPU kernels: the layers of this crate hand their tensors
//! here first, and fall back to burn's operations when a kernel does not apply.
//!
//! burn-flex runs each operation of a layer as its own pass with its own output buffer: a
//! convolution, then the bias, then `relu` and `clamp_max`, each reading and writing the whole
//! feature map, and its depthwise convolution reads strided columns one at a time. The kernels
//! compute a whole [`Conv2dNormActivation`](crate::Conv2dNormActivation) (once its BatchNorm is
//! folded by `fuse`), the projection with its residual add, and squeeze-and-excitation, each in
//! one pass over the output, on burn-flex's own buffers (no copy in or out). See
//! `docs/performance.md` for what each step gained.
//!
//! They apply when the input lives on burn-flex as `f32` without autodiff and the layer has no
//! BatchNorm left; everything else (ndarray, wgpu, training, unfused models) takes burn's path, so
//! results never depend on which ran beyond float rounding (the tests compare both).
//!
//! Training has kernels of its own, with backward steps: on burn-flex with autodiff, BatchNorm
//! with its activation, 1x1 and depthwise convolutions and squeeze-and-excitation run as
//! differentiable operations registered through burn's backend-extension point (see
//! [`LayerCounts::training`] and `docs/training.md`).
//!
//! Whether the kernels are used is a choice per call: [`with_kernels`] runs a closure with them
//! on or off, and [`count_layers`] counts the layers they computed in a closure. Neither touches
//! other threads' calls. The environment variable [`KERNELS_ENV`] sets the default for the whole
//! process (`MOBILENET_BURN_KERNELS=burn` turns them off, to measure burn's own operations).
//!
//! The kernels themselves (crate-private `kernels` module) work on plain slices and know nothing
//! of burn; this module is the only place that borrows burn-flex's buffers and decides whether a
//! layer fits a kernel.

#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod flex;

use std::cell::Cell;
use std::sync::OnceLock;

/// Environment variable read once for the process default: `burn` turns the native kernels off,
/// anything else (or nothing) leaves them on. [`with_kernels`] overrides it for one call.
pub const KERNELS_ENV: &str = "MOBILENET_BURN_KERNELS";

/// How many layers the native kernels computed; see [`count_layers`].
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::{MobileNetV3Config, native};
///
/// let device = Device::flex().autodiff();
/// let model = MobileNetV3Config::small().init(&device).train();
/// let (_, counts) = native::count_layers(|| model.forward(Tensor::zeros([2, 3, 32, 32], &device)));
/// // Training never takes the inference kernels.
/// assert_eq!(counts.inference, 0);
/// println!("{} layers on the training kernels", counts.training);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerCounts {
    /// Layers computed by the inference kernels (a fused model on burn-flex runs every
    /// convolution and squeeze-and-excitation there, and the segmentation heads' bilinear
    /// resizes).
    pub inference: u64,
    /// Convolutions, batch norms and squeeze-and-excitations computed as differentiable
    /// operations of the training kernels (a forward on `Device::flex().autodiff()`).
    pub training: u64,
    /// Inverted residual blocks (without squeeze-and-excitation) computed whole, one band of
    /// rows at a time, their expanded map never in memory in full; their layers are counted in
    /// `inference` too. Batches of at least two images per thread take this path.
    pub fused_blocks: u64,
}

/// The choice and the counts in effect on one thread.
#[derive(Debug, Clone, Copy, Default)]
struct Scope {
    /// `Some` inside [`with_kernels`]; `None` means the process default.
    enabled: Option<bool>,
    counts: LayerCounts,
}

thread_local! {
    static SCOPE: Cell<Scope> = const {
        Cell::new(Scope {
            enabled: None,
            counts: LayerCounts { inference: 0, training: 0, fused_blocks: 0 },
        })
    };
}

/// Restores a thread's [`Scope`] when dropped, so that a panic inside a scope cannot leak its
/// choice into later calls on the same thread.
struct Restore(Scope);

impl Drop for Restore {
    fn drop(&mut self) {
        SCOPE.with(|scope| scope.set(self.0));
    }
}

/// Runs `op` in `scope`, and returns what it returned with the layers counted meanwhile.
fn in_scope<R>(scope: Scope, op: impl FnOnce() -> R) -> (R, LayerCounts) {
    let restore = Restore(SCOPE.with(|current| current.replace(scope)));
    let result = op();
    let counts = SCOPE.with(Cell::get).counts;
    drop(restore);
    (result, counts)
}

/// Adds `counts` to the current thread's.
fn add_counts(counts: LayerCounts) {
    SCOPE.with(|scope| {
        let mut current = scope.get();
        current.counts.inference += counts.inference;
        current.counts.training += counts.training;
        current.counts.fused_blocks += counts.fused_blocks;
        scope.set(current);
    });
}

/// The process default: on, unless [`KERNELS_ENV`] says `burn` (read once).
fn default_enabled() -> bool {
    static DEFAULT: OnceLock<bool> = OnceLock::new();
    *DEFAULT.get_or_init(|| std::env::var(KERNELS_ENV).map_or(true, |value| value != "burn"))
}

/// Whether the native kernels are used where they apply, here and now: the innermost
/// [`with_kernels`] around this call decides, else the process default ([`KERNELS_ENV`]).
/// Always `false` without the `flex` feature.
///
/// ```
/// use mobilenet_burn::native;
///
/// println!("native kernels: {}", if native::enabled() { "on" } else { "off" });
/// assert!(!native::with_kernels(false, native::enabled));
/// ```
pub fn enabled() -> bool {
    cfg!(feature = "flex")
        && SCOPE
            .with(Cell::get)
            .enabled
            .unwrap_or_else(default_enabled)
}

/// Runs `op` with the native kernels turned on or off for every layer it runs, including the
/// forwards it starts on rayon's thread pool (a model's `forward` carries the choice there),
/// then restores the previous choice. Calls on other threads are not affected, so tests and
/// services can compare both paths side by side. Off, every layer runs burn's own operations;
/// outputs agree within float rounding either way.
///
/// Layers that `op` runs inside its own rayon tasks (`par_iter` closures) see the process
/// default, not this choice: wrap the work inside each task instead.
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor, Tolerance};
/// use mobilenet_burn::{MobileNetV3Config, native};
///
/// let device = Device::flex();
/// let model = MobileNetV3Config::small().init(&device).fuse();
/// let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device);
/// let burn_ops = native::with_kernels(false, || model.forward(x.clone()));
/// let kernels = native::with_kernels(true, || model.forward(x));
/// kernels.into_data().assert_approx_eq::<f32>(&burn_ops.into_data(), Tolerance::absolute(1e-4));
/// ```
pub fn with_kernels<R>(enabled: bool, op: impl FnOnce() -> R) -> R {
    let scope = Scope {
        enabled: Some(enabled),
        counts: LayerCounts::default(),
    };
    let (result, counts) = in_scope(scope, op);
    add_counts(counts);
    result
}

/// Runs `op` and counts the layers the native kernels computed meanwhile, on this thread and in
/// the forwards it starts on the thread pool: a way to check that a model takes the fast path.
/// Counts of other threads' calls are not included.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::{MobileNetV3Config, native};
///
/// let device = Device::flex();
/// let model = MobileNetV3Config::small().init(&device).fuse();
/// let (_, counts) = native::count_layers(|| model.forward(Tensor::zeros([1, 3, 64, 64], &device)));
/// if native::enabled() {
///     // The stem, 11 blocks (expansion, depthwise, SE, projection), the last convolution.
///     assert!(counts.inference > 40);
/// }
/// assert_eq!(counts.training, 0);
/// ```
pub fn count_layers<R>(op: impl FnOnce() -> R) -> (R, LayerCounts) {
    let current = SCOPE.with(Cell::get);
    let (result, counts) = in_scope(
        Scope {
            counts: LayerCounts::default(),
            ..current
        },
        op,
    );
    add_counts(counts);
    (result, counts)
}

#[cfg(feature = "flex")]
fn count_layer() {
    add_counts(LayerCounts {
        inference: 1,
        ..LayerCounts::default()
    });
}

/// `layers` layers computed by a kernel that takes a whole block, without counting a fused block
/// (those are the band kernel's).
#[cfg(feature = "flex")]
fn count_layers_run(layers: u64) {
    add_counts(LayerCounts {
        inference: layers,
        ..LayerCounts::default()
    });
}

#[cfg(feature = "flex")]
fn count_fused_block(layers: u64) {
    add_counts(LayerCounts {
        inference: layers,
        fused_blocks: 1,
        ..LayerCounts::default()
    });
}

#[cfg(feature = "flex")]
fn count_training_layer() {
    add_counts(LayerCounts {
        training: 1,
        ..LayerCounts::default()
    });
}

/// Runs `op` on a worker of rayon's global thread pool when the native kernels are on and the
/// caller is not a worker already; otherwise just runs it. The choice of [`with_kernels`] and
/// the counts of [`count_layers`] travel with it. The models' public forwards do this
/// themselves, once each; use it to run several layers by hand (timing stages, say) at the speed
/// they run inside `forward`.
///
/// Every layer splits its work over that pool. Called from outside it, each of the ~100 layers
/// of a network hands its work to the pool and puts the calling thread to sleep until it is
/// done: two context switches per layer, and on two cores a third thread competing with the two
/// workers. From inside, a layer's work is shared between the running worker and one that
/// steals it. This alone took MobileNetV2 at batch 1 from about 11 to 9 ms on a 2-core machine.
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
/// use mobilenet_burn::{MobileNetV3Config, native};
///
/// let device = Device::flex();
/// let model = MobileNetV3Config::small().init(&device).fuse();
/// let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device);
/// let stem = native::run_on_thread_pool(|| model.features.stem.forward(x));
/// assert_eq!(stem.dims(), [1, 16, 32, 32]);
/// ```
pub fn run_on_thread_pool<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "flex")]
    if enabled() && rayon::current_thread_index().is_none() {
        let scope = Scope {
            counts: LayerCounts::default(),
            ..SCOPE.with(Cell::get)
        };
        // On the worker, `op` runs in the caller's scope: a worker that steals this job while
        // it waits inside another forward restores that forward's scope afterwards.
        let done = std::sync::atomic::AtomicBool::new(false);
        let (result, counts) = rayon::scope(|_| {
            let forward = || {
                let result = in_scope(scope, op);
                done.store(true, std::sync::atomic::Ordering::Release);
                result
            };
            if rayon::current_num_threads() > 1 {
                rayon::join(forward, || keep_busy(&done)).0
            } else {
                forward()
            }
        });
        add_counts(counts);
        return result;
    }
    op()
}

/// How long [`keep_busy`] spins without finding work before it gives up.
#[cfg(feature = "flex")]
const SPIN_LIMIT: std::time::Duration = std::time::Duration::from_micros(500);

/// Keeps one more worker of the pool awake for the length of a forward, running the forward's
/// parallel work as soon as it appears, until `done`.
///
/// A forward splits ~100-150 layers over the pool, each for tens of microseconds. Between them,
/// rayon's idle workers go to sleep after a few dozen yields and must be woken through the
/// kernel for the next layer (a futex wake and a context switch, each time): on 2 threads that
/// was ~20% of a V3-Small forward's samples. Spinning here for the forward's length, as ONNX
/// Runtime's intra-op threads spin, keeps the second worker ready. It gives up after
/// [`SPIN_LIMIT`] without work (a long sequential stretch, or a forward waiting on work that
/// this very worker holds below it), so it can delay, never block, and then rayon's usual
/// sleep takes over. When the forward's own worker runs this (nobody stole it), `done` is
/// already set and it returns at once.
#[cfg(feature = "flex")]
fn keep_busy(done: &std::sync::atomic::AtomicBool) {
    crate::kernels::parallel::spin_until(done, SPIN_LIMIT);
}

/// [`run_on_thread_pool`] for a forward pass on `input`, except that a training forward (its
/// input records a graph) stays on the caller's thread: burn's BatchNorm files each running-statistics
/// update under the thread that made it and averages the threads' pending updates when it
/// synchronizes, so successive training steps on whichever pool worker picks them up would be
/// averaged rather than applied in turn. The native kernels never run in training anyway.
/// An inference forward with the kernels on first sizes the allocator for its maps
/// ([`prime_allocator`]).
pub(crate) fn forward_on_thread_pool<R: Send>(
    input: ForwardInput,
    op: impl FnOnce() -> R + Send,
) -> R {
    if input.autodiff {
        op()
    } else {
        if enabled() {
            prime_allocator(MAPS_PER_INPUT * input.values * size_of::<f32>());
        }
        run_on_thread_pool(op)
    }
}

/// What [`forward_on_thread_pool`] needs to know of a forward's input (taken before the
/// forward consumes it).
#[derive(Clone, Copy)]
pub(crate) struct ForwardInput {
    autodiff: bool,
    values: usize,
}

impl ForwardInput {
    pub(crate) fn of<const D: usize>(input: &burn::tensor::Tensor<D>) -> Self {
        Self {
            autodiff: input.is_autodiff(),
            values: input.shape().num_elements(),
        }
    }
}

/// The input's size times this bounds a forward's largest map (a stem's output at half the
/// size: 8x the input's values for MobileNetV2's 32 channels, 5.3x for V3's 16; the
/// segmentation logits at the input's size: 7x for 21 classes).
const MAPS_PER_INPUT: usize = 8;

/// The largest block glibc's malloc lets a freed mapping raise its threshold to
/// (`DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit, less the mapping's header page).
const MMAP_THRESHOLD_MAX: usize = (32 << 20) - 2 * 4096;

/// Lets glibc's malloc know, once per size, that blocks of `bytes` will come and go: one block
/// of that size is mapped (never touched) and freed. glibc then serves smaller blocks from its
/// heap and keeps up to twice that much of its heap's free top, as it does after any program
/// frees such a block (its dynamic mmap threshold; `mallopt(3)`). Without it, the first
/// forwards of a process that has freed no large block yet map each map-sized output afresh
/// and fault its pages in (SSDLite320 with the blocked stem: 732 page faults a forward, 1 ms of
/// 5; trained weights loaded from a file raise the threshold as a side effect). Another global
/// allocator gets one untouched allocation and its release, once.
fn prime_allocator(bytes: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PRIMED: AtomicUsize = AtomicUsize::new(0);
    let bytes = bytes.min(MMAP_THRESHOLD_MAX);
    if PRIMED.fetch_max(bytes, Ordering::Relaxed) >= bytes {
        return;
    }
    let block: Vec<u8> = Vec::with_capacity(bytes);
    // The allocation must happen (an allocation nothing reads may be removed).
    drop(std::hint::black_box(block));
}

/// Weights a kernel has rearranged for its layout (packed), kept with the layer that owns them
/// so that forwards after the first skip the packing, as ONNX Runtime prepacks its weights.
///
/// What it holds is checked before each use (the bridge keeps the weight buffers it packed
/// from and compares them with the layer's current ones), so a layer whose weights were
/// replaced (loaded, trained, moved) repacks rather than use stale values. Clones of a layer
/// share the cache; the modules' `map`, `to_device` and the like start an empty one. Safe to
/// use from several threads: a miss packs outside the lock, and the last one stored wins.
// Only the blocked kernel (x86-64) packs weights so far.
#[cfg_attr(not(all(feature = "flex", target_arch = "x86_64")), allow(dead_code))]
#[derive(Clone, Default)]
pub(crate) struct KernelCache(
    std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>>>,
);

impl KernelCache {
    /// The cached `T` if there is one and `valid` accepts it, else `make()`'s (stored for the
    /// next call); `None` if `make` declines.
    #[cfg_attr(not(all(feature = "flex", target_arch = "x86_64")), allow(dead_code))]
    pub(crate) fn get_or_make<T: std::any::Any + Send + Sync>(
        &self,
        valid: impl Fn(&T) -> bool,
        make: impl FnOnce() -> Option<T>,
    ) -> Option<std::sync::Arc<T>> {
        // A panic elsewhere while the lock was held leaves at worst an entry that `valid`
        // checks like any other.
        let lock = || {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        let cached = lock().clone();
        if let Some(entry) = cached.and_then(|any| any.downcast::<T>().ok())
            && valid(&entry)
        {
            return Some(entry);
        }
        let made = std::sync::Arc::new(make()?);
        *lock() = Some(made.clone());
        Some(made)
    }
}

impl std::fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelCache")
    }
}

/// What a native kernel did with a layer's input: computed the layer, or declined it and handed
/// the input back (moved, not copied) for burn's operations.
pub(crate) enum Outcome<const D: usize = 4> {
    /// The layer's output. (Only the burn-flex bridge computes anything.)
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    Computed(burn::tensor::Tensor<D>),
    /// The input, untouched: the kernels are off, or the layer or tensor does not fit them.
    Declined(burn::tensor::Tensor<D>),
}

/// `activation(layer(x))`, a classifier's fully connected layer: on the native kernel where it
/// applies (burn-flex, `f32`, no autodiff, a small batch), else burn's operations.
pub(crate) fn linear_activation(
    layer: &burn::nn::Linear,
    activation: crate::Activation,
    x: burn::tensor::Tensor<2>,
) -> burn::tensor::Tensor<2> {
    match linear(layer, activation, x) {
        Outcome::Computed(y) => y,
        Outcome::Declined(x) => activation.forward(layer.forward(x)),
    }
}

/// Without burn-flex every fully connected layer takes burn's path.
#[cfg(not(feature = "flex"))]
fn linear(
    _layer: &burn::nn::Linear,
    _activation: crate::Activation,
    x: burn::tensor::Tensor<2>,
) -> Outcome<2> {
    Outcome::Declined(x)
}

#[cfg(feature = "flex")]
pub(crate) use flex::{
    conv2d, inverted_residual, inverted_residual_run, linear, pointwise_depthwise, resize_bilinear,
    squeeze_excitation,
};

/// SSDLite's head outputs (`[batch, boxes * columns, h, w]` each) flattened and concatenated
/// as torchvision does (`view`, `permute(0, 3, 4, 1, 2)`, `reshape`, `cat`), to
/// `[batch, rows, columns]` with `h * w * boxes` rows per map, in one copy on the native
/// kernel; or `None` where it does not apply (the caller then takes burn's operations: a
/// permuted copy and a concatenation, 337 us of SSDLite320's forward on two threads).
pub(crate) fn predictions(
    maps: &[burn::tensor::Tensor<4>],
    columns: usize,
) -> Option<burn::tensor::Tensor<3>> {
    #[cfg(feature = "flex")]
    return flex::predictions(maps, columns);
    #[cfg(not(feature = "flex"))]
    {
        let _ = (maps, columns);
        None
    }
}

/// Global average pooling to one value per channel, `[batch, channels, h, w]` to `[batch,
/// channels, 1, 1]` (PyTorch's `adaptive_avg_pool2d(x, 1)`), on the native kernel where it
/// applies, else burn's operation. burn's pooling took 43 us of V2's head (1280 planes of 7x7)
/// on two threads, ONNX Runtime's 8.
pub(crate) fn global_average_pool(x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(pooled) = flex::global_average_pool(&x) {
        return pooled;
    }
    burn::tensor::module::adaptive_avg_pool2d(x, [1, 1])
}

/// Training kernels for burn-flex's autodiff, or `None` where they do not apply.
#[cfg(feature = "flex")]
pub(crate) mod training {
    pub(crate) use super::autodiff::{conv, norm_act, squeeze_excitation};
}

/// Without burn-flex every layer trains on burn's operations.
#[cfg(not(feature = "flex"))]
pub(crate) mod training {
    use burn::nn::BatchNorm;
    use burn::nn::conv::Conv2d;
    use burn::tensor::Tensor;

    pub(crate) fn conv(_conv: &Conv2d, _x: &Tensor<4>) -> Option<Tensor<4>> {
        None
    }

    pub(crate) fn norm_act(
        _norm: &BatchNorm,
        _activation: crate::Activation,
        _z: &Tensor<4>,
    ) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
        None
    }

    pub(crate) fn squeeze_excitation(
        _se: &crate::SqueezeExcitation,
        _x: &Tensor<4>,
    ) -> Option<Tensor<4>> {
        None
    }
}

/// Without burn-flex there is nothing to accelerate: every layer takes burn's path.
#[cfg(not(feature = "flex"))]
pub(crate) fn conv2d(
    _conv: &burn::nn::conv::Conv2d,
    _activation: crate::Activation,
    x: burn::tensor::Tensor<4>,
    _residual: Option<&burn::tensor::Tensor<4>>,
) -> Outcome {
    Outcome::Declined(x)
}

/// Without burn-flex there is nothing to accelerate: every layer takes burn's path.
#[cfg(not(feature = "flex"))]
pub(crate) fn pointwise_depthwise(
    _expand: (&burn::nn::conv::Conv2d, crate::Activation),
    _depthwise: (&burn::nn::conv::Conv2d, crate::Activation),
    x: burn::tensor::Tensor<4>,
) -> Outcome {
    Outcome::Declined(x)
}

/// Without burn-flex there is nothing to accelerate: every layer takes burn's path.
#[cfg(not(feature = "flex"))]
pub(crate) fn inverted_residual(
    _block: &crate::InvertedResidual,
    x: burn::tensor::Tensor<4>,
) -> Outcome {
    Outcome::Declined(x)
}

/// Without burn-flex there is nothing to accelerate: every block takes its own forward.
#[cfg(not(feature = "flex"))]
pub(crate) fn inverted_residual_run(
    _stem: Option<&crate::Conv2dNormActivation>,
    _blocks: &[crate::InvertedResidual],
    x: burn::tensor::Tensor<4>,
) -> (burn::tensor::Tensor<4>, usize) {
    (x, 0)
}

/// Without burn-flex there is nothing to accelerate: every layer takes burn's path.
#[cfg(not(feature = "flex"))]
pub(crate) fn squeeze_excitation(
    _se: &crate::SqueezeExcitation,
    x: burn::tensor::Tensor<4>,
) -> Outcome {
    Outcome::Declined(x)
}

/// Without burn-flex there is nothing to accelerate: every resize takes burn's path.
#[cfg(not(feature = "flex"))]
pub(crate) fn resize_bilinear(x: burn::tensor::Tensor<4>, _size: [usize; 2]) -> Outcome {
    Outcome::Declined(x)
}
