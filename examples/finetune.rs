//! Fine-tunes a MobileNet on a folder of labelled images (`DIR/<class>/<image>`, as
//! torchvision's `ImageFolder`), with torchvision's training transforms, and reports validation
//! accuracy after every epoch.
//!
//! ```sh
//! # a small offline dataset of drawn shapes (4 classes), then 5 epochs of V3-Small on it
//! cargo run --release --all-features --example finetune -- --make-demo demo-shapes
//! cargo run --release --all-features --example finetune -- --data demo-shapes --epochs 5
//! # a real folder, from a torchvision checkpoint, backbone frozen
//! cargo run --release --all-features --example finetune -- --data imagenette2/train \
//!     --model v3l --weights mobilenet_v3_large-5c1a4163.pth --freeze-backbone --epochs 3
//! ```
//!
//! Options: `--model v2|v3l|v3s` (v3s), `--epochs N` (5), `--batch N` (32), `--lr X` (0.05,
//! SGD with momentum 0.9 and weight decay 4e-5 as torchvision's MobileNet recipes, linear warm-up
//! over the first epoch then cosine decay to 0), `--size N` (crop size, 224), `--val-fraction X`
//! (0.2, a stratified split), `--seed N` (0), `--weights FILE` (a torchvision checkpoint: every
//! backbone weight is kept, the classifier's last layer re-initialized for the folder's classes),
//! `--freeze-backbone`, `--random-erase P` (0), `--min-scale X` (RandomResizedCrop's smallest
//! area, 0.08), `--resume EPOCH` (continue after epoch EPOCH from its checkpoint in `--out`, with
//! the same other options: the steps that follow are those of the uninterrupted run),
//! `--label-smoothing X` (0; PyTorch's `label_smoothing`, targets `y (1 - X) + X / classes`),
//! `--auto-augment ta_wide|imagenet|cifar10|svhn` (none; TrivialAugmentWide or AutoAugment with
//! bilinear sampling, as torchvision's recipe), `--mixup-alpha X` / `--cutmix-alpha X` (0; with
//! either, each batch is mixed by MixUp or CutMix, chosen at random as the recipe's
//! `RandomChoice`, and trained on soft targets), `--stop-after EPOCH` (end after that epoch's
//! checkpoint, as an interruption would; the schedule is still that of `--epochs`), `--out DIR`
//! (finetune-out), `--bn-momentum X` (torchvision's: 0.1 for V2, 0.01 for V3; timm's
//! `--bn-momentum`: from scratch and in few steps, V3's 0.01 leaves the running statistics far
//! behind the weights, and evaluation suffers), `--prefetch N` (1: batches decoded ahead by a
//! loader thread while the model trains; 0 decodes in the training loop, which also measures
//! the data pipeline alone).
//!
//! Writes to `--out`: `epoch-N.bpk` and `epoch-N.optim.bpk` after every epoch (the model and the
//! optimizer's state, burnpack), `model.bpk` and
//! `model.safetensors` (torchvision's keys, loadable by PyTorch) at the end, `curves.svg`
//! (training loss and validation accuracy per epoch) and `confusion.svg` (the last validation's
//! confusion matrix, also printed). Each epoch's line also says how fast the data pipeline ran
//! (decoding and augmenting, in parallel on all threads) and how fast training ran with it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use mobilenet_burn::data::{
    AutoAugment, AutoAugmentPolicy, AutoAugmentation, ImageFolder, Interpolation, MixUpCutMix,
    SeededDraws, TrainTransform, TrivialAugmentWide, shuffle,
};
use mobilenet_burn::pretrained::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD, ResizeInterpolation};
use mobilenet_burn::training::{soft_cross_entropy, torch_sgd};
use mobilenet_burn::{Error, MobileNetV2, MobileNetV2Config, MobileNetV3, MobileNetV3Config};

struct Args {
    data: Option<PathBuf>,
    make_demo: Option<PathBuf>,
    model: String,
    epochs: usize,
    batch: usize,
    lr: f64,
    size: u32,
    val_fraction: f64,
    seed: u64,
    weights: Option<PathBuf>,
    freeze_backbone: bool,
    random_erase: f32,
    min_scale: f64,
    resume: Option<usize>,
    stop_after: Option<usize>,
    label_smoothing: f32,
    auto_augment: Option<String>,
    bn_momentum: Option<f64>,
    prefetch: usize,
    mixup_alpha: f32,
    cutmix_alpha: f32,
    out: PathBuf,
}

const USAGE: &str = "usage: finetune --data DIR [--model v2|v3l|v3s] [--epochs N] [--batch N] \
                     [--lr X] [--size N] [--val-fraction X] [--seed N] [--weights FILE] \
                     [--freeze-backbone] [--random-erase P] [--min-scale X] [--resume EPOCH] \
                     [--stop-after EPOCH] [--label-smoothing X] \
                     [--auto-augment ta_wide|imagenet|cifar10|svhn] [--mixup-alpha X] \
                     [--cutmix-alpha X] [--bn-momentum X] [--prefetch N] [--out DIR]\n       \
                     finetune --make-demo DIR";

fn parse_args() -> Result<Args, String> {
    let mut parsed = Args {
        data: None,
        make_demo: None,
        model: "v3s".into(),
        epochs: 5,
        batch: 32,
        lr: 0.05,
        size: 224,
        val_fraction: 0.2,
        seed: 0,
        weights: None,
        freeze_backbone: false,
        random_erase: 0.0,
        min_scale: 0.08,
        resume: None,
        stop_after: None,
        label_smoothing: 0.0,
        auto_augment: None,
        bn_momentum: None,
        prefetch: 1,
        mixup_alpha: 0.0,
        cutmix_alpha: 0.0,
        out: "finetune-out".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        fn number<T: std::str::FromStr>(arg: &str, text: String) -> Result<T, String> {
            text.parse()
                .map_err(|_| format!("{arg} needs a number, got `{text}`"))
        }
        match arg.as_str() {
            "--data" => parsed.data = Some(value()?.into()),
            "--make-demo" => parsed.make_demo = Some(value()?.into()),
            "--model" => parsed.model = value()?,
            "--epochs" => parsed.epochs = number(&arg, value()?)?,
            "--batch" => parsed.batch = number(&arg, value()?)?,
            "--lr" => parsed.lr = number(&arg, value()?)?,
            "--size" => parsed.size = number(&arg, value()?)?,
            "--val-fraction" => parsed.val_fraction = number(&arg, value()?)?,
            "--seed" => parsed.seed = number(&arg, value()?)?,
            "--weights" => parsed.weights = Some(value()?.into()),
            "--freeze-backbone" => parsed.freeze_backbone = true,
            "--random-erase" => parsed.random_erase = number(&arg, value()?)?,
            "--min-scale" => parsed.min_scale = number(&arg, value()?)?,
            "--resume" => parsed.resume = Some(number(&arg, value()?)?),
            "--stop-after" => parsed.stop_after = Some(number(&arg, value()?)?),
            "--label-smoothing" => parsed.label_smoothing = number(&arg, value()?)?,
            "--auto-augment" => parsed.auto_augment = Some(value()?),
            "--bn-momentum" => parsed.bn_momentum = Some(number(&arg, value()?)?),
            "--prefetch" => parsed.prefetch = number(&arg, value()?)?,
            "--mixup-alpha" => parsed.mixup_alpha = number(&arg, value()?)?,
            "--cutmix-alpha" => parsed.cutmix_alpha = number(&arg, value()?)?,
            "--out" => parsed.out = value()?.into(),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if !["v2", "v3l", "v3s"].contains(&parsed.model.as_str()) {
        return Err(format!(
            "unknown model `{}`; use v2, v3l or v3s",
            parsed.model
        ));
    }
    if let Some(policy) = &parsed.auto_augment
        && !["ta_wide", "imagenet", "cifar10", "svhn"].contains(&policy.as_str())
    {
        return Err(format!(
            "unknown --auto-augment `{policy}`; use ta_wide, imagenet, cifar10 or svhn"
        ));
    }
    if parsed
        .bn_momentum
        .is_some_and(|m| !(0.0..=1.0).contains(&m))
    {
        return Err("--bn-momentum must be in [0, 1]".into());
    }
    if parsed.mixup_alpha < 0.0 || parsed.cutmix_alpha < 0.0 {
        return Err("--mixup-alpha and --cutmix-alpha must not be negative".into());
    }
    if !(0.0..=1.0).contains(&parsed.label_smoothing) {
        return Err("--label-smoothing must be in [0, 1]".into());
    }
    if parsed.batch == 0 || parsed.size < 32 || !(0.0..1.0).contains(&parsed.val_fraction) {
        return Err(format!(
            "--batch must be positive, --size at least 32, --val-fraction in [0, 1)\n{USAGE}"
        ));
    }
    if parsed.data.is_none() && parsed.make_demo.is_none() {
        return Err(USAGE.into());
    }
    Ok(parsed)
}

/// A training batch: images, labels, soft targets when mixed, and the time it took to make.
type Batch = (Tensor<4>, Tensor<1, Int>, Option<Tensor<2>>, Duration);

/// What the loop needs of either model family.
trait Classifier: Module + Sized {
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;
    fn transfer(self, path: &Path) -> Result<Self, Error>;
    fn freeze_backbone(self) -> Self;
    fn with_batch_norm_momentum(self, momentum: f64) -> Self;
    fn save_burnpack(&self, path: &Path) -> Result<(), Error>;
    fn load_burnpack(self, path: &Path) -> Result<Self, Error>;
    fn save_torchvision(&self, path: &Path) -> Result<(), Error>;
}

macro_rules! classifier {
    ($model:ident) => {
        impl Classifier for $model {
            fn logits(&self, x: Tensor<4>) -> Tensor<2> {
                self.forward(x)
            }
            fn transfer(self, path: &Path) -> Result<Self, Error> {
                let (model, report) = self.load_torchvision_backbone(path)?;
                for key in &report.reinitialized {
                    eprintln!(
                        "{}: checkpoint {:?}, model {:?}: re-initialized",
                        key.key, key.found, key.expected
                    );
                }
                Ok(model)
            }
            fn with_batch_norm_momentum(self, momentum: f64) -> Self {
                $model::with_batch_norm_momentum(self, momentum)
            }
            fn freeze_backbone(self) -> Self {
                $model::freeze_backbone(self)
            }
            fn save_burnpack(&self, path: &Path) -> Result<(), Error> {
                $model::save_burnpack(self, path)
            }
            fn load_burnpack(self, path: &Path) -> Result<Self, Error> {
                $model::load_burnpack(self, path)
            }
            fn save_torchvision(&self, path: &Path) -> Result<(), Error> {
                $model::save_torchvision(self, path)
            }
        }
    };
}
classifier!(MobileNetV2);
classifier!(MobileNetV3);

/// The learning rate at `step` of `total`: linear warm-up from 1% over `warmup` steps, then
/// cosine decay to 0 (torchvision's `--lr-warmup-method linear` + `--lr-scheduler cosineannealinglr`).
fn learning_rate(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        let progress = step as f64 / warmup as f64;
        base * (0.01 + 0.99 * progress)
    } else {
        let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Per-epoch figures for the curves.
struct Epoch {
    loss: f64,
    train_accuracy: f64,
    top1: f64,
}

fn train<M: Classifier>(model: M, dataset: &ImageFolder, args: &Args) -> Result<(), Error> {
    let device = Device::flex().autodiff();
    let model = match &args.weights {
        Some(path) => model.transfer(path)?,
        None => model,
    };
    let model = match args.bn_momentum {
        Some(momentum) => model.with_batch_norm_momentum(momentum),
        None => model,
    };
    let mut model = if args.freeze_backbone {
        model.freeze_backbone()
    } else {
        model
    }
    .train();
    let (train_indices, val_indices) = dataset.split(args.val_fraction, args.seed);
    let classes = dataset.classes().len();
    println!(
        "{} classes, {} training and {} validation images",
        classes,
        train_indices.len(),
        val_indices.len()
    );
    let mut transform = TrainTransform::imagenet(args.size);
    transform.crop.scale.0 = args.min_scale;
    if let Some(policy) = &args.auto_augment {
        // The reference recipe samples the geometric operations bilinearly.
        let interpolation = Interpolation::Bilinear;
        let policy = match policy.as_str() {
            "ta_wide" => AutoAugmentation::TrivialAugmentWide(TrivialAugmentWide {
                interpolation,
                ..TrivialAugmentWide::default()
            }),
            name => AutoAugmentation::AutoAugment(AutoAugment {
                policy: match name {
                    "cifar10" => AutoAugmentPolicy::Cifar10,
                    "svhn" => AutoAugmentPolicy::Svhn,
                    _ => AutoAugmentPolicy::ImageNet,
                },
                interpolation,
            }),
        };
        transform = transform.with_auto_augment(policy);
    }
    if args.random_erase > 0.0 {
        transform = transform.with_random_erasing(args.random_erase);
    }
    let mixing = MixUpCutMix::new(args.mixup_alpha, args.cutmix_alpha);
    let eval = EvalTransform {
        resize_size: args.size * 256 / 224,
        crop_size: args.size,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        interpolation: ResizeInterpolation::Bilinear,
    };
    let steps_per_epoch = train_indices.len().div_ceil(args.batch);
    let total = steps_per_epoch * args.epochs;
    let mut optimizer = torch_sgd(0.9, 4e-5).init();
    let first_epoch = args.resume.unwrap_or(0);
    if let Some(epoch) = args.resume {
        // Model (with its parameter ids, which key the optimizer's state) and optimizer state.
        model = model
            .load_burnpack(&args.out.join(format!("epoch-{epoch}.bpk")))?
            .train();
        let path = args.out.join(format!("epoch-{epoch}.optim.bpk"));
        optimizer = optimizer
            .load(&path)
            .map_err(|error| Error::UnreadableCheckpoint {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        println!("resumed after epoch {epoch}");
    }
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((args.label_smoothing > 0.0).then_some(args.label_smoothing))
        .init(&device);
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Io {
        path: args.out.clone(),
        source,
    })?;
    let mut history = Vec::new();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let started = Instant::now();
    for epoch in first_epoch..args.epochs {
        // burn's generator (dropout masks) re-seeded per epoch, so that a resumed run draws what
        // the uninterrupted one drew.
        device.seed(
            args.seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64 + 1),
        );
        // A seeded shuffle per epoch.
        let mut order = train_indices.clone();
        let mut draws = SeededDraws::for_item(args.seed, epoch as u64, u64::MAX);
        shuffle(&mut order, &mut draws);
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
            )
            .expect("a valid template"),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, args.epochs));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let epoch_started = Instant::now();
        let (mut busy, mut waiting) = (Duration::ZERO, Duration::ZERO);
        // Decodes, augments and mixes one batch; the time it took comes with it.
        let load = |index: usize, chunk: &[usize]| -> Result<Batch, Error> {
            let started = Instant::now();
            let (x, y) = dataset.batch(chunk, &transform, args.seed, epoch as u64, &device)?;
            // MixUp / CutMix: the batch's own seeded draws (step-indexed, so a resume repeats them).
            let (x, soft_targets) = match &mixing {
                Some(mixing) => {
                    let mut draws = SeededDraws::for_item(!args.seed, epoch as u64, index as u64);
                    let (x, targets) = mixing.apply(x, y.clone(), classes, &mut draws)?;
                    (x, Some(targets))
                }
                None => (x, None),
            };
            Ok((x, y, soft_targets, started.elapsed()))
        };
        let chunks: Vec<&[usize]> = order.chunks(args.batch).collect();
        model = std::thread::scope(|scope| -> Result<M, Error> {
            let mut model = model;
            // `--prefetch N`: a loader thread keeps up to N batches ready while the model trains.
            let (sender, receiver) = std::sync::mpsc::sync_channel(args.prefetch.max(1));
            if args.prefetch > 0 {
                let (load, chunks) = (&load, &chunks);
                scope.spawn(move || {
                    for (index, chunk) in chunks.iter().enumerate() {
                        let batch = load(index, chunk);
                        let failed = batch.is_err();
                        if sender.send(batch).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            for (index, chunk) in chunks.iter().enumerate() {
                let step = epoch * steps_per_epoch + index;
                let lr = learning_rate(args.lr, step, steps_per_epoch, total);
                let wait_started = Instant::now();
                let batch = if args.prefetch > 0 {
                    receiver
                        .recv()
                        .expect("the loader sends a batch per step or an error")?
                } else {
                    load(index, chunk)?
                };
                waiting += wait_started.elapsed();
                let (x, y, soft_targets, load_time) = batch;
                busy += load_time;
                let logits = model.logits(x);
                // Accuracy against each image's own label.
                correct += count_correct(logits.clone(), y.clone());
                let loss = match soft_targets {
                    Some(targets) => soft_cross_entropy(logits, targets, args.label_smoothing),
                    None => loss_fn.forward(logits, y),
                };
                let value = f64::from(loss.clone().into_scalar::<f32>());
                loss_sum += value * chunk.len() as f64;
                seen += chunk.len();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(lr, model, grads);
                bar.set_message(format!(
                    "loss {:.3} acc {:.1}% lr {lr:.4}",
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64
                ));
                bar.inc(1);
            }
            Ok(model)
        })?;
        bar.finish();
        let epoch_seconds = epoch_started.elapsed().as_secs_f64();
        let images = seen as f64;
        println!(
            "epoch {}: data pipeline {:.0} images/s, the model waited for data {:.0}% of the \
             epoch, training with it {:.1} images/s",
            epoch + 1,
            images / busy.as_secs_f64().max(1e-9),
            100.0 * waiting.as_secs_f64() / epoch_seconds.max(1e-9),
            images / epoch_seconds.max(1e-9)
        );
        let (top1, top5) = validate(&model, dataset, &val_indices, &eval, &mut confusion)?;
        println!(
            "epoch {}: train loss {:.4}, train accuracy {:.1}%, validation top-1 {:.1}%, top-5 {:.1}% ({:.0} s)",
            epoch + 1,
            loss_sum / seen as f64,
            100.0 * correct as f64 / seen as f64,
            100.0 * top1,
            100.0 * top5,
            started.elapsed().as_secs_f64()
        );
        history.push(Epoch {
            loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            top1,
        });
        model.save_burnpack(&args.out.join(format!("epoch-{}.bpk", epoch + 1)))?;
        let path = args.out.join(format!("epoch-{}.optim.bpk", epoch + 1));
        optimizer.save(&path).map_err(|error| Error::Save {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        if args.stop_after == Some(epoch + 1) {
            println!(
                "stopped after epoch {}: continue with --resume {}",
                epoch + 1,
                epoch + 1
            );
            return Ok(());
        }
    }
    model.save_burnpack(&args.out.join("model.bpk"))?;
    model.save_torchvision(&args.out.join("model.safetensors"))?;
    print_confusion(dataset.classes(), &confusion);
    write_file(&args.out.join("curves.svg"), &curves_svg(&history))?;
    write_file(
        &args.out.join("confusion.svg"),
        &confusion_svg(dataset.classes(), &confusion),
    )?;
    println!(
        "wrote {} (model.bpk, model.safetensors, curves.svg, confusion.svg) in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let predicted = logits.argmax(1).squeeze_dim::<1>(1);
    predicted.equal(labels).int().sum().into_scalar::<i64>() as usize
}

/// Top-1 and top-5 accuracy on `indices` in evaluation mode, and the confusion matrix
/// (`confusion[true][predicted]`, overwritten).
fn validate<M: Classifier>(
    model: &M,
    dataset: &ImageFolder,
    indices: &[usize],
    eval: &EvalTransform,
    confusion: &mut [Vec<usize>],
) -> Result<(f64, f64), Error> {
    let device = Device::flex();
    let model = model.valid();
    confusion.iter_mut().for_each(|row| row.fill(0));
    let (mut top1, mut top5) = (0usize, 0usize);
    for chunk in indices.chunks(64) {
        let (x, y) = dataset.eval_batch(chunk, eval, &device)?;
        let logits: Vec<f32> = model
            .logits(x)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let labels: Vec<i64> = y
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap_or_default();
        let classes = confusion.len();
        for (row, &label) in logits.chunks(classes).zip(&labels) {
            let mut ranked: Vec<usize> = (0..classes).collect();
            ranked.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let label = label as usize;
            top1 += usize::from(ranked[0] == label);
            top5 += usize::from(ranked.iter().take(5).any(|&c| c == label));
            confusion[label][ranked[0]] += 1;
        }
    }
    let count = indices.len().max(1) as f64;
    Ok((top1 as f64 / count, top5 as f64 / count))
}

fn print_confusion(classes: &[String], confusion: &[Vec<usize>]) {
    println!("confusion matrix (rows: true class, columns: predicted):");
    let width = classes.iter().map(String::len).max().unwrap_or(0).max(5);
    print!("{:width$}", "");
    for class in classes {
        print!(" {:>width$}", class);
    }
    println!();
    for (class, row) in classes.iter().zip(confusion) {
        print!("{class:width$}");
        for count in row {
            print!(" {count:>width$}");
        }
        println!();
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Training loss and validation top-1 per epoch, two panels side by side.
fn curves_svg(history: &[Epoch]) -> String {
    let (panel_w, panel_h, margin) = (320.0, 220.0, 40.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * (panel_w + 2.0 * margin),
        panel_h + 2.0 * margin
    );
    let max_loss = history.iter().map(|e| e.loss).fold(1e-9, f64::max);
    let panels: [(&str, Vec<f64>, f64, &str); 2] = [
        (
            "training loss",
            history.iter().map(|e| e.loss).collect(),
            max_loss,
            "#c0392b",
        ),
        (
            "accuracy: train (grey), validation top-1 (blue)",
            history.iter().map(|e| e.top1).collect(),
            1.0,
            "#2471a3",
        ),
    ];
    for (panel, (title, values, top, colour)) in panels.iter().enumerate() {
        let x0 = margin + panel as f64 * (panel_w + 2.0 * margin);
        let y0 = margin;
        svg += &format!(
            "<text x=\"{x0}\" y=\"{}\">{}</text>\n<rect x=\"{x0}\" y=\"{y0}\" width=\"{panel_w}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#999\"/>\n",
            y0 - 10.0,
            escape(title)
        );
        let point = |i: usize, v: f64| {
            let x = x0 + panel_w * (i as f64 + 0.5) / values.len().max(1) as f64;
            let y = y0 + panel_h * (1.0 - v / top);
            format!("{x:.1},{y:.1}")
        };
        let mut series = vec![(values.clone(), *colour)];
        if panel == 1 {
            series.push((history.iter().map(|e| e.train_accuracy).collect(), "#999"));
        }
        for (values, colour) in series {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| point(i, v))
                .collect();
            svg += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
                points.join(" ")
            );
        }
        svg += &format!(
            "<text x=\"{x0}\" y=\"{}\">epochs 1-{}, top {top:.3}</text>\n",
            y0 + panel_h + 16.0,
            history.len()
        );
    }
    svg + "</svg>\n"
}

/// The confusion matrix as a heat map with counts.
fn confusion_svg(classes: &[String], confusion: &[Vec<usize>]) -> String {
    let (cell, label_w) = (48.0, 120.0);
    let n = classes.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{label_w}\" y=\"16\">predicted (columns) vs true class (rows)</text>\n",
        label_w + n * cell + 10.0,
        label_w + n * cell + 10.0
    );
    let max = confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for (i, class) in classes.iter().enumerate() {
        let offset = label_w + (i as f64 + 0.5) * cell;
        svg += &format!(
            "<text x=\"{}\" y=\"{offset}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
            label_w - 6.0,
            escape(class)
        );
        svg += &format!(
            "<text x=\"{offset}\" y=\"{}\" text-anchor=\"end\" transform=\"rotate(-45 {offset} {})\">{}</text>\n",
            label_w - 6.0,
            label_w - 6.0,
            escape(class)
        );
        for (j, &count) in confusion[i].iter().enumerate() {
            let shade = 255.0 - 200.0 * count as f64 / max;
            let (x, y) = (label_w + j as f64 * cell, label_w + i as f64 * cell);
            svg += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({shade:.0},{shade:.0},255)\" stroke=\"white\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" dominant-baseline=\"middle\">{count}</text>\n",
                x + cell / 2.0,
                y + cell / 2.0
            );
        }
    }
    svg + "</svg>\n"
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Draws `per_class` images of each of four shapes (disc, square, triangle, stripes) in random
/// colours, sizes and places over a noisy background: a dataset that needs no download.
fn make_demo(root: &Path, per_class: usize) -> Result<(), Error> {
    const CLASSES: [&str; 4] = ["disc", "square", "stripes", "triangle"];
    let size = 160u32;
    for (label, class) in CLASSES.iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for index in 0..per_class {
            let mut draws = SeededDraws::for_item(label as u64, 0, index as u64);
            let mut u = move || mobilenet_burn::data::Draws::rand(&mut draws);
            let background = [u() * 255.0, u() * 255.0, u() * 255.0];
            let colour = [u() * 255.0, u() * 255.0, u() * 255.0];
            let radius = (0.15 + 0.2 * u()) * size as f32;
            let (cx, cy) = (
                radius + u() * (size as f32 - 2.0 * radius),
                radius + u() * (size as f32 - 2.0 * radius),
            );
            let period = 6.0 + 10.0 * u();
            let noise_seed = (label * 100_000 + index) as u32;
            let image = image::RgbImage::from_fn(size, size, |x, y| {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                let inside = match label {
                    0 => dx * dx + dy * dy <= radius * radius,
                    1 => dx.abs() <= radius * 0.85 && dy.abs() <= radius * 0.85,
                    2 => ((x as f32 + y as f32) / period) as i32 % 2 == 0,
                    _ => dy <= radius * 0.8 && dy >= -radius && dx.abs() <= (dy + radius) * 0.6,
                };
                let hash = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ noise_seed)
                    .wrapping_mul(2_654_435_761);
                let noise = (hash >> 24) as f32 / 255.0 * 40.0 - 20.0;
                let base = if inside { colour } else { background };
                image::Rgb(base.map(|c| (c + noise).clamp(0.0, 255.0) as u8))
            });
            let path = dir.join(format!("{index:04}.png"));
            image.save(&path).map_err(|error| Error::Image {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        }
    }
    println!(
        "wrote {} images of {} classes under {}",
        per_class * CLASSES.len(),
        CLASSES.len(),
        root.display()
    );
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let result = (|| -> Result<(), Error> {
        if let Some(root) = &args.make_demo {
            make_demo(root, 100)?;
        }
        let Some(data) = &args.data else {
            return Ok(());
        };
        let dataset = ImageFolder::new(data)?;
        let classes = dataset.classes().len();
        let device = Device::flex().autodiff();
        // Initial weights from the seed.
        device.seed(args.seed);
        match args.model.as_str() {
            "v2" => train(
                MobileNetV2Config::new()
                    .with_num_classes(classes)
                    .init(&device),
                &dataset,
                &args,
            ),
            "v3l" => train(
                MobileNetV3Config::large()
                    .with_num_classes(classes)
                    .init(&device),
                &dataset,
                &args,
            ),
            _ => train(
                MobileNetV3Config::small()
                    .with_num_classes(classes)
                    .init(&device),
                &dataset,
                &args,
            ),
        }
    })();
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
