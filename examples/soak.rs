//! Soak test: 10,000 forwards of each model at batch 1 on the CPU (flex, native kernels, fused
//! batch norms), reporting resident memory at start, after warm-up and at the end (it must not
//! grow beyond noise), and the peak resident memory of each model at batch 1 and 8, each
//! measured in a fresh process. Linux (`/proc/self/status`).
//!
//! ```sh
//! cargo run --release --all-features --example soak            # 10,000 forwards per model
//! cargo run --release --all-features --example soak -- 2000     # fewer
//! ```

use std::process::Command;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use mobilenet_burn::{MobileNetV2Config, MobileNetV3Config};

/// `VmRSS` and `VmHWM` (peak) of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One model, one batch size, in this process: prints `rss_start rss_warm rss_end peak ms`.
fn child(model: &str, batch: usize, iterations: usize) {
    let device = Device::flex();
    let (start, _) = memory();
    let forward: Box<dyn Fn(Tensor<4>) -> Tensor<2>> = match model {
        "v2" => {
            let model = MobileNetV2Config::new().init(&device).fuse();
            Box::new(move |x| model.forward(x))
        }
        "v3l" => {
            let model = MobileNetV3Config::large().init(&device).fuse();
            Box::new(move |x| model.forward(x))
        }
        _ => {
            let model = MobileNetV3Config::small().init(&device).fuse();
            Box::new(move |x| model.forward(x))
        }
    };
    let input = Tensor::<4>::random(
        [batch, 3, 224, 224],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let warm_up = 100.min(iterations);
    for _ in 0..warm_up {
        let _ = forward(input.clone()).into_data();
    }
    let (warm, _) = memory();
    let started = Instant::now();
    let mut samples = Vec::new();
    for i in 0..iterations {
        let _ = forward(input.clone()).into_data();
        if (i + 1) % (iterations / 5).max(1) == 0 {
            samples.push(memory().0);
        }
    }
    let per_forward = started.elapsed().as_secs_f64() * 1e3 / iterations.max(1) as f64;
    let (end, peak) = memory();
    let samples: Vec<String> = samples.iter().map(|mib| format!("{mib:.1}")).collect();
    println!(
        "{start:.1} {warm:.1} {end:.1} {peak:.1} {per_forward:.2} {}",
        samples.join(",")
    );
}

fn run(model: &str, batch: usize, iterations: usize) -> Vec<String> {
    let exe = std::env::current_exe().expect("the example's path");
    let output = Command::new(exe)
        .args([
            "--child",
            model,
            &batch.to_string(),
            &iterations.to_string(),
        ])
        .output()
        .expect("a child process");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let number = |i: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(1);
        child(&args[1], number(2), number(3));
        return;
    }
    let iterations: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    println!("{iterations} forwards per model at batch 1, 224x224, fused, flex; memory in MiB\n");
    println!(
        "| model | RSS at start | after warm-up | at the end | during (5 samples) | peak, batch 1 | peak, batch 8 | ms per forward |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|");
    for model in ["v2", "v3l", "v3s"] {
        let one = run(model, 1, iterations);
        let eight = run(model, 8, 20);
        let field = |values: &[String], i: usize| values.get(i).cloned().unwrap_or("?".into());
        println!(
            "| {model} | {} | {} | {} | {} | {} | {} | {} |",
            field(&one, 0),
            field(&one, 1),
            field(&one, 2),
            field(&one, 5),
            field(&one, 3),
            field(&eight, 3),
            field(&one, 4)
        );
    }
}
