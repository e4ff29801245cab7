//! Builds MobileNetV2, V3-Large and V3-Small with random weights on the chosen backend, runs a
//! 224x224 forward pass through each, and prints output shape, parameter count and wall time,
//! unfused and with batch norm folded into the convolutions (`fuse`).
//!
//! ```text
//! cargo run --release --all-features --example forward -- --backend flex
//! cargo run --release --all-features --example forward -- --backend ndarray
//! cargo run --release --all-features --example forward -- --backend wgpu
//! ```
//!
//! The backend is chosen explicitly: burn's `Device::default()` prefers any GPU backend compiled
//! in, and lavapipe, Mesa's software Vulkan driver, counts as one.

#[path = "common/backend.rs"]
mod backend;

use std::time::{Duration, Instant};

use burn::tensor::{Distribution, Tensor};
use mobilenet_burn::{MobileNetV2Config, MobileNetV3Config};

/// Forward passes timed per model after one warm-up pass; the median is reported.
const TIMED_RUNS: usize = 5;

fn parse_backend() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let mut backend = "flex".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => backend = args.next().ok_or("--backend needs a value")?,
            "--help" | "-h" => {
                println!("usage: forward [--backend flex|ndarray|wgpu]");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(backend)
}

/// Times `forward` on the same input: one warm-up, then the median of [`TIMED_RUNS`].
fn time(forward: impl Fn() -> Vec<usize>) -> (Vec<usize>, Duration, Duration) {
    let start = Instant::now();
    let shape = forward();
    let first = start.elapsed();
    let mut runs: Vec<Duration> = (0..TIMED_RUNS)
        .map(|_| {
            let start = Instant::now();
            forward();
            start.elapsed()
        })
        .collect();
    runs.sort();
    (shape, first, runs[TIMED_RUNS / 2])
}

fn print_row(
    name: &str,
    params: usize,
    forward: impl Fn(Tensor<4>) -> Tensor<2>,
    fused_forward: impl Fn(Tensor<4>) -> Tensor<2>,
    input: &Tensor<4>,
) {
    // Progress on stderr: a first wgpu pass compiles and tunes kernels, which takes a minute
    // or more on a software Vulkan device.
    eprintln!("{name}: warm-up and {TIMED_RUNS} timed runs, unfused then fused...");
    // `into_data` waits for the result, so asynchronous backends are timed to completion.
    let (shape, first, median) = time(|| forward(input.clone()).into_data().shape().to_vec());
    let (_, _, fused) = time(|| fused_forward(input.clone()).into_data().shape().to_vec());
    println!(
        "| {name} | {shape:?} | {params} | {:.1} ms | {:.1} ms | {:.1} ms |",
        first.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        fused.as_secs_f64() * 1e3
    );
}

fn main() {
    let backend = parse_backend().unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(2);
    });
    let device = backend::device(&backend).unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1);
    });
    let input = Tensor::<4>::random([1, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);

    println!(
        "backend: {backend}; input [1, 3, 224, 224]; random weights; \
         median of {TIMED_RUNS} runs after a warm-up\n"
    );
    println!("| model | output | parameters | first run | median | median, BN fused |");
    println!("|---|---|---|---|---|---|");
    let v2 = MobileNetV2Config::new().init(&device);
    let v2_fused = v2.clone().fuse();
    let params = v2.num_learnable_params();
    let (unfused, fused) = (|x| v2.forward(x), |x| v2_fused.forward(x));
    print_row("mobilenet_v2", params, unfused, fused, &input);
    let large = MobileNetV3Config::large().init(&device);
    let large_fused = large.clone().fuse();
    let params = large.num_learnable_params();
    let (unfused, fused) = (|x| large.forward(x), |x| large_fused.forward(x));
    print_row("mobilenet_v3_large", params, unfused, fused, &input);
    let small = MobileNetV3Config::small().init(&device);
    let small_fused = small.clone().fuse();
    let params = small.num_learnable_params();
    let (unfused, fused) = (|x| small.forward(x), |x| small_fused.forward(x));
    print_row("mobilenet_v3_small", params, unfused, fused, &input);
}
