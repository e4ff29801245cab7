//! Times one model's forward pass and prints one JSON line per model: the measurement that
//! `scripts/compare_peers.py` sets beside ONNX Runtime, PyTorch and tract, and the loop to run
//! under a profiler.
//!
//! ```text
//! cargo run --release --all-features --example latency -- \
//!     [--model v2|v3l|v3s|v4s|v4m|v4l|v4hm|v4hl|v4|all|ssd-v2|ssd-v3l|ssd-v3s|ssd|lraspp|lraspp-v3s|\
//!     deeplabv3|seg] \
//!     [--batch 1] [--size 224] [--runs 50] \
//!     [--warmup 5] \
//!     [--backend flex|ndarray|wgpu] [--unfused] [--seconds S] [--serve] \
//!     [--weights FILE] [--input FILE] [--save-output FILE]
//! ```
//!
//! `ssd-*` are SSDLite320 detectors (COCO's 91 classes; pass `--size 320`) on V2, V3-Large
//! (reduced tail, torchvision's COCO model) and V3-Small, timed through their heads.
//! `v4s`, `v4m`, `v4l`, `v4hm` and `v4hl` are MobileNetV4 Conv-Small, Conv-Medium, Conv-Large,
//! Hybrid-Medium and Hybrid-Large (timm's).
//! `lraspp`, `lraspp-v3s` and `deeplabv3` are the segmentation models (21 classes, dilated
//! backbone; torchvision's evaluates at 520x520: pass `--size 520`), timed up to the logits at
//! the input's size; `seg` is all three.
//! Weights are random (speed does not depend on their values); BatchNorm is folded into the
//! convolutions unless `--unfused`. `--seconds S` keeps running forward passes for S seconds
//! after the timed runs, for `perf record`. Progress goes to stderr, results to stdout.
//!
//! `--serve` (one model) keeps the model loaded after its warm-up and answers stdin: each line
//! holding a number N runs N forwards and prints one JSON line with their median, until stdin
//! closes. `scripts/compare_peers.py --paired` alternates such blocks with ONNX Runtime's, so
//! that both runtimes see the same moments of a noisy machine.
//!
//! To check that a timed backend computes what torchvision does (`scripts/gpu_throughput.py
//! --check` on a GPU): `--weights FILE` loads a torchvision checkpoint (`v2`, `v3l`, `v3s`),
//! `--input FILE` replaces the random input with raw little-endian f32 values of the shape
//! `[batch, 3, size, size]`, and `--save-output FILE` writes the last forward's logits
//! (SSDLite: class logits) as raw little-endian f32.

#[path = "common/backend.rs"]
mod backend;

use std::time::{Duration, Instant};

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use mobilenet_burn::detection::SsdLiteConfig;
use mobilenet_burn::segmentation::{DeepLabV3Config, LrAsppConfig};
use mobilenet_burn::{MobileNetV2Config, MobileNetV3Config, MobileNetV4Config};

/// COCO's classes, background included, as torchvision's SSDLite.
const COCO_CLASSES: usize = 91;
/// Pascal VOC's classes, background included, as torchvision's segmentation weights.
const VOC_CLASSES: usize = 21;

struct Args {
    models: Vec<String>,
    batch: usize,
    size: usize,
    runs: usize,
    warmup: usize,
    backend: String,
    fused: bool,
    seconds: f64,
    serve: bool,
    weights: Option<String>,
    input: Option<String>,
    save_output: Option<String>,
}

const USAGE: &str = "usage: latency [--model v2|v3l|v3s|v4s|v4m|v4l|v4hm|v4hl|v4|all|ssd-v2|ssd-v3l|ssd-v3s|ssd|lraspp|\
                     lraspp-v3s|deeplabv3|seg] [--batch N] \
                     [--size N] [--runs N] \
                     [--warmup N] [--backend flex|ndarray|wgpu] [--unfused] [--seconds S] [--serve] \
                     [--weights FILE] [--input FILE] [--save-output FILE]";

fn parse_args() -> Result<Args, String> {
    let mut parsed = Args {
        models: vec!["v2".into(), "v3l".into(), "v3s".into()],
        batch: 1,
        size: 224,
        runs: 50,
        warmup: 5,
        backend: "flex".into(),
        fused: true,
        seconds: 0.0,
        serve: false,
        weights: None,
        input: None,
        save_output: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| -> Result<usize, String> {
            text.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{arg} needs a positive number, got `{text}`"))
        };
        match arg.as_str() {
            "--model" => {
                let model = value()?;
                parsed.models = match model.as_str() {
                    "all" => parsed.models,
                    "v2" | "v3l" | "v3s" | "v4s" | "v4m" | "v4l" | "v4hm" | "v4hl" | "ssd-v2"
                    | "ssd-v3l" | "ssd-v3s" | "lraspp" | "lraspp-v3s" | "deeplabv3" => vec![model],
                    "v4" => vec!["v4s".into(), "v4m".into(), "v4hm".into()],
                    "ssd" => vec!["ssd-v2".into(), "ssd-v3l".into(), "ssd-v3s".into()],
                    "seg" => vec!["lraspp".into(), "lraspp-v3s".into(), "deeplabv3".into()],
                    other => {
                        return Err(format!(
                            "unknown model `{other}`; use v2, v3l, v3s, v4s, v4m, v4l, v4hm, v4hl, v4, all, \
                             ssd-v2, ssd-v3l, ssd-v3s, ssd, lraspp, lraspp-v3s, deeplabv3 or seg"
                        ));
                    }
                }
            }
            "--batch" => parsed.batch = number(value()?)?,
            "--size" => parsed.size = number(value()?)?,
            "--runs" => parsed.runs = number(value()?)?,
            "--warmup" => {
                parsed.warmup = value()?.parse().map_err(|_| "--warmup needs a number")?
            }
            "--backend" => parsed.backend = value()?,
            "--unfused" => parsed.fused = false,
            "--seconds" => {
                parsed.seconds = value()?
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or("--seconds needs a number of seconds")?
            }
            "--serve" => parsed.serve = true,
            "--weights" => parsed.weights = Some(value()?),
            "--input" => parsed.input = Some(value()?),
            "--save-output" => parsed.save_output = Some(value()?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if parsed.serve && parsed.models.len() != 1 {
        return Err("--serve needs exactly one model".into());
    }
    if parsed.weights.is_some()
        && !(parsed.models.len() == 1 && ["v2", "v3l", "v3s"].contains(&parsed.models[0].as_str()))
    {
        return Err("--weights needs exactly one of the models v2, v3l, v3s".into());
    }
    if parsed.save_output.is_some() && parsed.models.len() != 1 {
        return Err("--save-output needs exactly one model".into());
    }
    Ok(parsed)
}

/// The `p`-th quantile (0..=1) of sorted durations, in milliseconds.
fn quantile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

/// Answers stdin until it closes: a line holding a number N runs N forwards and prints the
/// median of their times as one JSON line; anything else is reported on stderr and skipped.
fn serve(name: &str, run: &dyn Fn() -> Duration) {
    use std::io::{BufRead, Write};
    eprintln!("{name}: serving; a line with N on stdin runs N forwards");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some(runs) = line.trim().parse::<usize>().ok().filter(|&n| n > 0) else {
            eprintln!("{name}: expected a positive number of runs, got `{line}`");
            continue;
        };
        let mut times: Vec<Duration> = (0..runs).map(|_| run()).collect();
        times.sort();
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (the reader gone) ends the service like a closed stdin.
        if writeln!(
            stdout,
            "{{\"model\": \"{name}\", \"runs\": {runs}, \"median_ms\": {:.3}, \"min_ms\": {:.3}}}",
            quantile_ms(&times, 0.5),
            quantile_ms(&times, 0.0)
        )
        .and_then(|()| stdout.flush())
        .is_err()
        {
            break;
        }
    }
}

/// The value of `result`, or its error on stderr and exit status 1.
fn exit_on_error<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1);
    })
}

/// Raw little-endian f32 values of `shape` from `path`, as a tensor on `device`.
fn read_input(path: &str, shape: [usize; 4], device: &Device) -> Result<Tensor<4>, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("{path}: {error}"))?;
    let expected = shape.iter().product::<usize>() * 4;
    if bytes.len() != expected {
        return Err(format!(
            "{path}: {} bytes, expected {expected} (f32 values of shape {shape:?})",
            bytes.len()
        ));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

/// Writes `output`'s values to `path` as raw little-endian f32, through a temporary file
/// beside it, so that `path` appears only once complete.
fn save_output(path: &str, output: TensorData) -> Result<(), String> {
    let values = output
        .try_to_vec::<f32>()
        .map_err(|error| format!("output is not f32: {error:?}"))?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let partial = format!("{path}.partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|error| {
            let _ = std::fs::remove_file(&partial);
            format!("{path}: {error}")
        })
}

/// This process's peak resident memory so far (`VmHWM`), in MiB; `None` off Linux.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args = parse_args().unwrap_or_else(|error| {
        eprintln!("error: {error}\n{USAGE}");
        std::process::exit(2);
    });
    let device = backend::device(&args.backend).unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1);
    });
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let shape = [args.batch, 3, args.size, args.size];
    let input = match &args.input {
        Some(path) => exit_on_error(read_input(path, shape, &device)),
        None => Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device),
    };
    for name in &args.models {
        // Each forward waits for its result (`into_data`), so asynchronous backends are timed
        // to completion.
        let forward: Box<dyn Fn(Tensor<4>) -> TensorData> = match name.as_str() {
            "v2" => {
                let model = MobileNetV2Config::new().init(&device);
                let model = match &args.weights {
                    Some(path) => exit_on_error(model.load_torchvision(path)),
                    None => model,
                };
                let model = if args.fused { model.fuse() } else { model };
                Box::new(move |x| model.forward(x).into_data())
            }
            "v4s" | "v4m" | "v4l" | "v4hm" | "v4hl" => {
                let config = match name.as_str() {
                    "v4s" => MobileNetV4Config::conv_small(),
                    "v4m" => MobileNetV4Config::conv_medium(),
                    "v4l" => MobileNetV4Config::conv_large(),
                    "v4hl" => MobileNetV4Config::hybrid_large().with_layer_scale(Some(1.0)),
                    // Layer scales of 1 rather than timm's initial 1e-5: the blocks without a
                    // residual multiply the activations by their scale, so that at 1e-5 they
                    // fall to ~1e-20 by the last stage, where the attention's products go
                    // subnormal and slow every runtime without flush-to-zero. Trained weights
                    // have no such scales; `scripts/compare_peers.py` sets the same for its peers.
                    _ => MobileNetV4Config::hybrid_medium().with_layer_scale(Some(1.0)),
                };
                let model = config.init(&device);
                let model = if args.fused { model.fuse() } else { model };
                Box::new(move |x| model.forward(x).into_data())
            }
            "lraspp" | "lraspp-v3s" => {
                let config = if name == "lraspp" {
                    LrAsppConfig::mobilenet_v3_large(VOC_CLASSES)
                } else {
                    LrAsppConfig::mobilenet_v3_small(VOC_CLASSES)
                };
                let model = config.init(&device);
                let model = if args.fused { model.fuse() } else { model };
                Box::new(move |x| model.forward(x).into_data())
            }
            "deeplabv3" => {
                let model = DeepLabV3Config::mobilenet_v3_large(VOC_CLASSES).init(&device);
                let model = if args.fused { model.fuse() } else { model };
                Box::new(move |x| model.forward(x).into_data())
            }
            ssd if ssd.starts_with("ssd-") => {
                let config = match ssd {
                    "ssd-v2" => SsdLiteConfig::mobilenet_v2(COCO_CLASSES),
                    "ssd-v3l" => SsdLiteConfig::mobilenet_v3_large(COCO_CLASSES),
                    _ => SsdLiteConfig::mobilenet_v3_small(COCO_CLASSES),
                };
                let model = config.init(&device);
                let model = if args.fused { model.fuse() } else { model };
                // The network (backbone, extra blocks, heads); not the host-side decoding and
                // NMS, whose cost depends on how many boxes trained weights let through.
                Box::new(move |x| {
                    let output = model.forward(x);
                    let class_logits = output.cls_logits.into_data();
                    drop(output.bbox_regression.into_data());
                    class_logits
                })
            }
            _ => {
                let config = if name == "v3l" {
                    MobileNetV3Config::large()
                } else {
                    MobileNetV3Config::small()
                };
                let model = config.init(&device);
                let model = match &args.weights {
                    Some(path) => exit_on_error(model.load_torchvision(path)),
                    None => model,
                };
                let model = if args.fused { model.fuse() } else { model };
                Box::new(move |x| model.forward(x).into_data())
            }
        };
        // `into_data` waits for the result, so asynchronous backends are timed to completion.
        let run = || {
            let start = Instant::now();
            let output = forward(input.clone());
            let elapsed = start.elapsed();
            drop(output);
            elapsed
        };
        if args.serve {
            eprintln!("{name}: {} warm-up runs...", args.warmup);
        } else {
            eprintln!(
                "{name}: {} warm-up and {} timed runs...",
                args.warmup, args.runs
            );
        }
        for _ in 0..args.warmup {
            run();
        }
        if args.serve {
            serve(name, &run);
            return;
        }
        let mut times: Vec<Duration> = (0..args.runs).map(|_| run()).collect();
        times.sort();
        println!(
            "{{\"model\": \"{name}\", \"backend\": \"{}\", \"threads\": \"{threads}\", \
             \"batch\": {}, \"size\": {}, \"fused\": {}, \"runs\": {}, \"median_ms\": {:.3}, \
             \"p10_ms\": {:.3}, \"p90_ms\": {:.3}, \"min_ms\": {:.3}, \"peak_rss_mib\": {}}}",
            args.backend,
            args.batch,
            args.size,
            args.fused,
            args.runs,
            quantile_ms(&times, 0.5),
            quantile_ms(&times, 0.1),
            quantile_ms(&times, 0.9),
            quantile_ms(&times, 0.0),
            peak_rss_mib().map_or("null".to_string(), |mib| format!("{mib:.1}")),
        );
        if let Some(path) = &args.save_output {
            exit_on_error(save_output(path, forward(input.clone())));
            eprintln!("{name}: output written to {path}");
        }
        if args.seconds > 0.0 {
            eprintln!("{name}: running for {} s more (profiling)...", args.seconds);
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < args.seconds {
                run();
            }
        }
    }
}
