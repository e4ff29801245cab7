//! Criterion benchmarks: every model x batch {1, 8} x backend, unfused and with BatchNorm folded
//! (`fuse`), at 224x224 with random weights.
//!
//! ```text
//! cargo bench --all-features --bench forward                      # flex and ndarray
//! MOBILENET_BENCH_BACKENDS=flex cargo bench --all-features --bench forward -- v3_small
//! MOBILENET_BENCH_BACKENDS=flex,ndarray,wgpu cargo bench --all-features --bench forward
//! ```
//!
//! `MOBILENET_BENCH_BACKENDS` (comma-separated) picks the backends; wgpu is left out by default
//! because on a machine without a GPU it runs on lavapipe, Mesa's software Vulkan device, where
//! one V2 forward takes seconds. Benchmark names read `forward/<backend>/<model>/<variant>/b<N>`,
//! so a criterion filter such as `flex/v2` selects a slice. Throughput is in images per second.

#[path = "../examples/common/backend.rs"]
mod backend;

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mobilenet_burn::{MobileNetV2Config, MobileNetV3Config};

type Forward = Box<dyn Fn(Tensor<4>) -> Tensor<2>>;

/// The three torchvision models at width 1.0, unfused and fused.
fn models(device: &Device) -> Vec<(&'static str, &'static str, Forward)> {
    let v2 = MobileNetV2Config::new().init(device);
    let large = MobileNetV3Config::large().init(device);
    let small = MobileNetV3Config::small().init(device);
    let (v2_fused, large_fused, small_fused) = (
        v2.clone().fuse(),
        large.clone().fuse(),
        small.clone().fuse(),
    );
    vec![
        ("v2", "unfused", Box::new(move |x| v2.forward(x))),
        ("v2", "fused", Box::new(move |x| v2_fused.forward(x))),
        ("v3_large", "unfused", Box::new(move |x| large.forward(x))),
        (
            "v3_large",
            "fused",
            Box::new(move |x| large_fused.forward(x)),
        ),
        ("v3_small", "unfused", Box::new(move |x| small.forward(x))),
        (
            "v3_small",
            "fused",
            Box::new(move |x| small_fused.forward(x)),
        ),
    ]
}

fn backends() -> Vec<String> {
    let default = ["flex", "ndarray"]
        .iter()
        .filter(|name| backend::device(name).is_ok())
        .map(|name| name.to_string())
        .collect();
    match std::env::var("MOBILENET_BENCH_BACKENDS") {
        Ok(list) => list
            .split(',')
            .map(|name| name.trim().to_string())
            .collect(),
        Err(_) => default,
    }
}

fn forward(c: &mut Criterion) {
    for name in backends() {
        let device = match backend::device(&name) {
            Ok(device) => device,
            Err(error) => {
                eprintln!("skipping backend {name}: {error}");
                continue;
            }
        };
        let mut group = c.benchmark_group(format!("forward/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(4));
        for (model, variant, forward) in models(&device) {
            for batch in [1, 8] {
                let input =
                    Tensor::<4>::random([batch, 3, 224, 224], Distribution::Default, &device);
                group.throughput(Throughput::Elements(batch as u64));
                let id = BenchmarkId::new(format!("{model}/{variant}"), format!("b{batch}"));
                // `into_data` waits for the result, so asynchronous backends are timed to the end.
                group.bench_function(id, |bencher| {
                    bencher.iter(|| black_box(forward(input.clone()).into_data()))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
