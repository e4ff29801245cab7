//! Transfer learning in a few lines: a torchvision checkpoint (or random weights) with a new
//! head for `--classes` classes, a few SGD steps on a synthetic batch, and the result saved as a
//! torchvision `.safetensors` that PyTorch loads with `strict=True`.
//!
//! ```text
//! cargo run --release --example transfer -- [--model v2|v3l|v3s] [--width 1.0] \
//!     [--weights mobilenet_v3_small-047dcff4.pth] [--classes 3] [--steps 10] [--size 96] \
//!     [--freeze-backbone] [--out fine_tuned.safetensors]
//! ```
//!
//! The synthetic images of class `c` are noise around a colour of their own, so the loss falls
//! within a few steps. Beside the model it writes `<out>.check.safetensors` holding an input
//! and the model's eval logits on it: `scripts/check_save_torchvision.py` loads the model into
//! torchvision with `strict=True` and compares its logits with these.

use std::path::PathBuf;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use mobilenet_burn::training::torch_sgd;
use mobilenet_burn::{Error, MobileNetV2, MobileNetV2Config, MobileNetV3, MobileNetV3Config};

struct Args {
    model: String,
    width: f64,
    weights: Option<PathBuf>,
    classes: usize,
    steps: usize,
    size: usize,
    freeze_backbone: bool,
    out: PathBuf,
}

const USAGE: &str = "usage: transfer [--model v2|v3l|v3s] [--width W] [--weights FILE] \
                     [--classes N] [--steps N] [--size N] [--freeze-backbone] [--out FILE]";

fn parse_args() -> Result<Args, String> {
    let mut parsed = Args {
        model: "v3s".into(),
        width: 1.0,
        weights: None,
        classes: 3,
        steps: 10,
        size: 96,
        freeze_backbone: false,
        out: "fine_tuned.safetensors".into(),
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
            "--model" => parsed.model = value()?,
            "--width" => {
                parsed.width = value()?
                    .parse()
                    .map_err(|_| "--width needs a number".to_string())?
            }
            "--weights" => parsed.weights = Some(value()?.into()),
            "--classes" => parsed.classes = number(value()?)?,
            "--steps" => parsed.steps = number(value()?)?,
            "--size" => parsed.size = number(value()?)?,
            "--freeze-backbone" => parsed.freeze_backbone = true,
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
    Ok(parsed)
}

/// What the loop needs of either family: the same methods, written once for each.
trait FineTune: Module + Sized {
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;
    fn transfer(self, path: &std::path::Path) -> Result<Self, Error>;
    fn freeze_backbone(self) -> Self;
    fn save_torchvision(&self, path: &std::path::Path) -> Result<(), Error>;
}

macro_rules! fine_tune {
    ($model:ident) => {
        impl FineTune for $model {
            fn logits(&self, x: Tensor<4>) -> Tensor<2> {
                self.forward(x)
            }
            fn transfer(self, path: &std::path::Path) -> Result<Self, Error> {
                let (model, report) = self.load_torchvision_backbone(path)?;
                for key in &report.reinitialized {
                    eprintln!(
                        "{}: checkpoint {:?}, model {:?}: re-initialized",
                        key.key, key.found, key.expected
                    );
                }
                Ok(model)
            }
            fn freeze_backbone(self) -> Self {
                $model::freeze_backbone(self)
            }
            fn save_torchvision(&self, path: &std::path::Path) -> Result<(), Error> {
                $model::save_torchvision(self, path)
            }
        }
    };
}
fine_tune!(MobileNetV2);
fine_tune!(MobileNetV3);

/// A batch of `batch` images: image `i` has class `i % classes`, and its pixels are noise around
/// that class's colour.
fn synthetic_batch(
    batch: usize,
    classes: usize,
    size: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let labels: Vec<i64> = (0..batch).map(|i| (i % classes) as i64).collect();
    let colours: Vec<f32> = labels
        .iter()
        .flat_map(|&label| {
            (0..3).map(move |channel| ((label as usize * 3 + channel) % 5) as f32 * 0.5 - 1.0)
        })
        .collect();
    let colours = Tensor::<4>::from_data(TensorData::new(colours, [batch, 3, 1, 1]), device);
    let noise = Tensor::<4>::random(
        [batch, 3, size, size],
        Distribution::Normal(0.0, 0.5),
        device,
    );
    let labels = Tensor::from_data(TensorData::new(labels, [batch]), device);
    (noise + colours, labels)
}

fn train<M: FineTune>(model: M, args: &Args, device: &Device) -> Result<(), Error> {
    let model = match &args.weights {
        Some(path) => model.transfer(path)?,
        None => model,
    };
    let mut model = if args.freeze_backbone {
        model.freeze_backbone()
    } else {
        model
    }
    .train();
    let mut optimizer = torch_sgd(0.9, 1e-4).init();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    for step in 0..args.steps {
        let (x, y) = synthetic_batch(4 * args.classes, args.classes, args.size, device);
        let loss = loss_fn.forward(model.logits(x), y);
        println!(
            "step {step:3}: loss {:.4}",
            loss.clone().into_scalar::<f32>()
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.02, model, grads);
    }

    let model = model.valid();
    model.save_torchvision(&args.out)?;
    // An input and the logits on it, for scripts/check_save_torchvision.py.
    let plain = device.clone().inner();
    let (x, _) = synthetic_batch(2, args.classes, args.size, &plain);
    let logits = model.logits(x.clone());
    let check = args.out.with_extension("check.safetensors");
    let as_view = |tensor: TensorData| {
        let shape = tensor.shape().to_vec();
        let bytes: Vec<u8> = tensor
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        (shape, bytes)
    };
    let (input_shape, input) = as_view(x.into_data());
    let (logits_shape, logits) = as_view(logits.into_data());
    let views = [
        (
            "input",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, input_shape, &input),
        ),
        (
            "logits",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, logits_shape, &logits),
        ),
    ]
    .map(|(name, view)| (name, view.expect("consistent tensor view")));
    safetensors::serialize_to_file(views, None, &check).map_err(|error| Error::Save {
        path: check.clone(),
        reason: error.to_string(),
    })?;
    println!("saved {} and {}", args.out.display(), check.display());
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
    let device = Device::flex().autodiff();
    let result = match args.model.as_str() {
        "v2" => train(
            MobileNetV2Config::new()
                .with_width_mult(args.width)
                .init(&device)
                .reset_classifier(args.classes, &device),
            &args,
            &device,
        ),
        "v3l" => train(
            MobileNetV3Config::large()
                .with_width_mult(args.width)
                .init(&device)
                .reset_classifier(args.classes, &device),
            &args,
            &device,
        ),
        _ => train(
            MobileNetV3Config::small()
                .with_width_mult(args.width)
                .init(&device)
                .reset_classifier(args.classes, &device),
            &args,
            &device,
        ),
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
