//! Times one training step (forward in training mode, cross entropy, backward, SGD with momentum
//! and weight decay) and prints one JSON line per model: images per second, the median step, and
//! the process's peak resident memory. `scripts/compare_training.py` runs it beside PyTorch
//! eager's training step on the same shapes and threads.
//!
//! ```text
//! cargo run --release --all-features --example train_step -- \
//!     [--model v2|v3l|v3s|v4s|v4m|all] [--batch 32] [--size 224] [--steps 5] [--warmup 1] \
//!     [--backend flex|ndarray|wgpu] [--profile]
//! ```
//!
//! Weights are random (speed does not depend on them); dropout is torchvision's 0.2 (timm's 0 for
//! MobileNetV4 Conv-Small and Conv-Medium, `v4s` and `v4m`).
//! `--profile` also times the forward, the backward and the optimizer step apart, to show where
//! the time goes. Peak memory (`VmHWM` of /proc/self/status) is per process: run one model per
//! process for a per-model figure, as the script does.

#[path = "common/backend.rs"]
mod backend;

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Int, Tensor};
use mobilenet_burn::training::torch_sgd;
use mobilenet_burn::{
    MobileNetV2, MobileNetV2Config, MobileNetV3, MobileNetV3Config, MobileNetV4, MobileNetV4Config,
};

const CLASSES: usize = 1000;

struct Args {
    models: Vec<String>,
    batch: usize,
    size: usize,
    steps: usize,
    warmup: usize,
    backend: String,
    profile: bool,
}

const USAGE: &str = "usage: train_step [--model v2|v3l|v3s|all] [--batch N] [--size N] \
                     [--steps N] [--warmup N] [--backend flex|ndarray|wgpu] [--profile]";

fn parse_args() -> Result<Args, String> {
    let mut parsed = Args {
        models: vec!["v2".into(), "v3l".into(), "v3s".into()],
        batch: 32,
        size: 224,
        steps: 5,
        warmup: 1,
        backend: "flex".into(),
        profile: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| -> Result<usize, String> {
            text.parse::<usize>()
                .ok()
                .ok_or(format!("{arg} needs a number, got `{text}`"))
        };
        match arg.as_str() {
            "--model" => {
                let model = value()?;
                parsed.models = match model.as_str() {
                    "all" => parsed.models,
                    "v2" | "v3l" | "v3s" | "v4s" | "v4m" => vec![model],
                    other => {
                        return Err(format!(
                            "unknown model `{other}`; use v2, v3l, v3s, v4s, v4m or all"
                        ));
                    }
                }
            }
            "--batch" => parsed.batch = number(value()?)?.max(1),
            "--size" => parsed.size = number(value()?)?.max(32),
            "--steps" => parsed.steps = number(value()?)?.max(1),
            "--warmup" => parsed.warmup = number(value()?)?,
            "--backend" => parsed.backend = value()?,
            "--profile" => parsed.profile = true,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(parsed)
}

/// The one thing the loop needs of a model.
trait Classifier: Module {
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;
}

impl Classifier for MobileNetV2 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

impl Classifier for MobileNetV3 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

impl Classifier for MobileNetV4 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

/// Seconds of one step, and of its forward, backward and optimizer parts.
struct StepTimes {
    total: f64,
    forward: f64,
    backward: f64,
    optimizer: f64,
}

fn step<M: Classifier>(
    model: M,
    optimizer: &mut ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    device: &Device,
    profile: bool,
) -> (M, StepTimes) {
    let sync = || {
        if profile {
            let _ = device.sync();
        }
    };
    let start = Instant::now();
    let loss = CrossEntropyLossConfig::new()
        .init(device)
        .forward(model.logits(x), y);
    sync();
    let forward = start.elapsed().as_secs_f64();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    sync();
    let backward = start.elapsed().as_secs_f64() - forward;
    let model = optimizer.step(0.01, model, grads);
    // The step is done once the new weights exist.
    let _ = device.sync();
    let total = start.elapsed().as_secs_f64();
    (
        model,
        StepTimes {
            total,
            forward,
            backward,
            optimizer: total - forward - backward,
        },
    )
}

fn run<M: Classifier>(name: &str, mut model: M, args: &Args, device: &Device) {
    let mut optimizer = torch_sgd(0.9, 1e-4).init();
    let shape = [args.batch, 3, args.size, args.size];
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let labels: Vec<i64> = (0..args.batch).map(|i| (i * 37 % CLASSES) as i64).collect();
    let y =
        Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(labels, [args.batch]), device);
    let mut times = Vec::new();
    for index in 0..args.warmup + args.steps {
        let (next, time) = step(
            model,
            &mut optimizer,
            x.clone(),
            y.clone(),
            device,
            args.profile,
        );
        model = next;
        eprintln!(
            "{name} step {index}: {:.3} s (forward {:.3}, backward {:.3}, optimizer {:.3})",
            time.total, time.forward, time.backward, time.optimizer
        );
        if index >= args.warmup {
            times.push(time);
        }
    }
    let median = |pick: fn(&StepTimes) -> f64| {
        let mut values: Vec<f64> = times.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let step_s = median(|t| t.total);
    println!(
        "{{\"model\": \"{name}\", \"backend\": \"{}\", \"batch\": {}, \"size\": {}, \"steps\": {}, \
         \"step_s\": {step_s:.4}, \"images_per_s\": {:.2}, \"forward_s\": {:.4}, \
         \"backward_s\": {:.4}, \"optimizer_s\": {:.4}, \"peak_rss_mib\": {:.1}}}",
        args.backend,
        args.batch,
        args.size,
        args.steps,
        args.batch as f64 / step_s,
        median(|t| t.forward),
        median(|t| t.backward),
        median(|t| t.optimizer),
        peak_rss_mib().unwrap_or(f64::NAN),
    );
}

/// The process's peak resident set (`VmHWM`), in MiB, where /proc is there to say it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let device = match backend::device(&args.backend) {
        Ok(device) => device.autodiff(),
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    for name in &args.models {
        match name.as_str() {
            "v2" => run(
                name,
                MobileNetV2Config::new().init(&device).train(),
                &args,
                &device,
            ),
            "v3l" => run(
                name,
                MobileNetV3Config::large().init(&device).train(),
                &args,
                &device,
            ),
            "v4s" | "v4m" => {
                let config = if name == "v4s" {
                    MobileNetV4Config::conv_small()
                } else {
                    MobileNetV4Config::conv_medium()
                };
                run(name, config.init(&device).train(), &args, &device)
            }
            _ => run(
                name,
                MobileNetV3Config::small().init(&device).train(),
                &args,
                &device,
            ),
        }
    }
}
