//! Native CPU kernels for inference on burn-flex: the layers of this crate hand their tensors
//! here first, and fall back to burn's operations when a kernel does not apply.
//!
//! burn-flex runs each operation of a layer as its own pass with its own output buffer: a
//! convolution, then the bias, then `relu` and `clamp_max`, each reading and writing the whole
//! feature map, and its depthwise convolution reads strided columns one at a time. These kernels
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
//! [`training_layers_run`] and `docs/training.md`).
//! [`set_enabled`]`(false)`, or the environment variable `MOBILENET_BURN_KERNELS=burn`, turns them
//! off to measure burn's own operations.

#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod conv;
#[cfg(feature = "flex")]
mod direct;
#[cfg(feature = "flex")]
mod elementwise;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
pub(crate) mod simd;
#[cfg(feature = "flex")]
mod train;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Environment variable read once: `burn` turns the native kernels off, anything else leaves them on.
pub const KERNELS_ENV: &str = "MOBILENET_BURN_KERNELS";

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNSET);

/// Turns the native CPU kernels on or off for the whole process (default: on, unless
/// `MOBILENET_BURN_KERNELS=burn`). Off, every layer runs burn's own operations; outputs agree
/// within float rounding either way.
///
/// ```no_run
/// use mobilenet_burn::kernels;
///
/// // Time burn's own operations against the native kernels.
/// kernels::set_enabled(false);
/// // ... forward passes ...
/// kernels::set_enabled(true);
/// ```
pub fn set_enabled(enabled: bool) {
    STATE.store(if enabled { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether the native CPU kernels are used where they apply. Always `false` without the `flex`
/// feature.
///
/// ```
/// use mobilenet_burn::kernels;
///
/// println!("native kernels: {}", if kernels::enabled() { "on" } else { "off" });
/// ```
pub fn enabled() -> bool {
    if !cfg!(feature = "flex") {
        return false;
    }
    match STATE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let enabled = std::env::var(KERNELS_ENV).map_or(true, |value| value != "burn");
            set_enabled(enabled);
            enabled
        }
    }
}

/// Runs `op` on a worker of rayon's global thread pool when the native kernels are on and the
/// caller is not a worker already; otherwise just runs it. The models' `forward` and
/// `forward_features` do this themselves; use it to run several layers by hand (timing stages,
/// say) at the speed they run inside `forward`.
///
/// Every layer splits its work over that pool. Called from outside it, each of the ~100 layers
/// of a network hands its work to the pool and puts the calling thread to sleep until it is
/// done: two context switches per layer, and on two cores a third thread competing with the two
/// workers. From inside, a layer's work is shared between the running worker and one that
/// steals it. This alone took MobileNetV2 at batch 1 from about 11 to 9 ms on a 2-core machine.
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
/// use mobilenet_burn::{MobileNetV3Config, kernels};
///
/// let device = Device::flex();
/// let model = MobileNetV3Config::small().init(&device).fuse();
/// let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device);
/// let stem = kernels::run_on_thread_pool(|| model.features.stem.forward(x));
/// assert_eq!(stem.dims(), [1, 16, 32, 32]);
/// ```
pub fn run_on_thread_pool<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "flex")]
    if enabled() && rayon::current_thread_index().is_none() {
        return rayon::scope(|_| op());
    }
    op()
}

/// [`run_on_thread_pool`] for a forward pass, except that a training forward (`autodiff`: its
/// input records a graph) stays on the caller's thread: burn's BatchNorm files each running-statistics
/// update under the thread that made it and averages the threads' pending updates when it
/// synchronizes, so successive training steps on whichever pool worker picks them up would be
/// averaged rather than applied in turn. The native kernels never run in training anyway.
pub(crate) fn forward_on_thread_pool<R: Send>(autodiff: bool, op: impl FnOnce() -> R + Send) -> R {
    if autodiff {
        op()
    } else {
        run_on_thread_pool(op)
    }
}

static LAYERS_RUN: AtomicU64 = AtomicU64::new(0);

/// How many layers the native kernels have computed in this process, so far: a way to check
/// that a model takes the fast path (a fused model on burn-flex runs every convolution and
/// squeeze-and-excitation here).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::{MobileNetV3Config, kernels};
///
/// let device = Device::flex();
/// let model = MobileNetV3Config::small().init(&device).fuse();
/// let before = kernels::layers_run();
/// model.forward(Tensor::zeros([1, 3, 64, 64], &device));
/// if kernels::enabled() {
///     assert!(kernels::layers_run() > before);
/// }
/// ```
pub fn layers_run() -> u64 {
    LAYERS_RUN.load(Ordering::Relaxed)
}

#[cfg(feature = "flex")]
fn count_layer() {
    LAYERS_RUN.fetch_add(1, Ordering::Relaxed);
}

static TRAINING_LAYERS_RUN: AtomicU64 = AtomicU64::new(0);

/// How many convolutions and batch norms the training kernels have computed in this process, so
/// far. A training forward on `Device::flex().autodiff()` runs its 1x1 and depthwise
/// convolutions and its batch norms (with the activation after them) as differentiable
/// operations with hand-written backward steps, not through [`layers_run`]'s inference
/// kernels, which have no backward. See `docs/training.md`.
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::{Device, Tensor};
/// use mobilenet_burn::{MobileNetV3Config, kernels};
///
/// let device = Device::flex().autodiff();
/// let model = MobileNetV3Config::small().init(&device).train();
/// let before = kernels::training_layers_run();
/// model.forward(Tensor::zeros([2, 3, 32, 32], &device));
/// println!("{} layers on the training kernels", kernels::training_layers_run() - before);
/// ```
pub fn training_layers_run() -> u64 {
    TRAINING_LAYERS_RUN.load(Ordering::Relaxed)
}

#[cfg(feature = "flex")]
fn count_training_layer() {
    TRAINING_LAYERS_RUN.fetch_add(1, Ordering::Relaxed);
}

#[cfg(feature = "flex")]
pub(crate) use flex::{conv2d, squeeze_excitation};

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
// `Err` hands the caller's input back (moved, not copied) for burn's path.
#[allow(clippy::result_large_err)]
pub(crate) fn conv2d(
    _conv: &burn::nn::conv::Conv2d,
    _activation: crate::Activation,
    x: burn::tensor::Tensor<4>,
    _residual: Option<&burn::tensor::Tensor<4>>,
) -> Result<burn::tensor::Tensor<4>, burn::tensor::Tensor<4>> {
    Err(x)
}

/// Without burn-flex there is nothing to accelerate: every layer takes burn's path.
#[cfg(not(feature = "flex"))]
#[allow(clippy::result_large_err)]
pub(crate) fn squeeze_excitation(
    _se: &crate::SqueezeExcitation,
    x: burn::tensor::Tensor<4>,
) -> Result<burn::tensor::Tensor<4>, burn::tensor::Tensor<4>> {
    Err(x)
}
