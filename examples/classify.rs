//! Classifies photos with torchvision's ImageNet weights and prints the top-5 labels.
//!
//! ```text
//! cargo run --release --features pretrained --example classify -- assets/chelsea.png
//! cargo run --release --features pretrained --example classify -- \
//!     --model mobilenet_v2 --weights mobilenet_v2-7ebf99e0.pth photo1.jpg photo2.png
//! ```
//!
//! Without `--weights`, the model's DEFAULT weights are downloaded once into the cache
//! (`MOBILENET_BURN_CACHE`, else the user's cache directory); with it, nothing touches the
//! network. Runs on the flex CPU backend.

use std::path::PathBuf;

use burn::tensor::Device;
use mobilenet_burn::pretrained::{
    EvalTransform, MobileNetV2Weights, MobileNetV3LargeWeights, MobileNetV3SmallWeights,
    WeightsInfo, top_k,
};
use mobilenet_burn::{Error, MobileNetV2, MobileNetV3};

const USAGE: &str = "usage: classify [--model mobilenet_v3_large|mobilenet_v3_small|mobilenet_v2] \
                     [--weights FILE] IMAGE...";

struct Args {
    model: String,
    weights: Option<PathBuf>,
    images: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        model: "mobilenet_v3_large".to_string(),
        weights: None,
        images: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => parsed.model = args.next().ok_or("--model needs a value")?,
            "--weights" => {
                parsed.weights = Some(args.next().ok_or("--weights needs a file")?.into())
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            image => parsed.images.push(image.into()),
        }
    }
    if parsed.images.is_empty() {
        return Err("no image given".to_string());
    }
    Ok(parsed)
}

/// A classifier: the model's forward pass and its weights' metadata.
type Classifier = (
    Box<dyn Fn(burn::tensor::Tensor<4>) -> burn::tensor::Tensor<2>>,
    &'static WeightsInfo,
);

fn classifier(args: &Args, device: &Device) -> Result<Classifier, String> {
    let error = |error: Error| error.to_string();
    match args.model.as_str() {
        "mobilenet_v2" => {
            let weights = MobileNetV2Weights::DEFAULT;
            let model = match &args.weights {
                Some(path) => MobileNetV2::from_file(weights, path, device),
                None => MobileNetV2::pretrained(weights, device),
            }
            .map_err(error)?;
            Ok((Box::new(move |x| model.forward(x)), weights.info()))
        }
        "mobilenet_v3_large" | "mobilenet_v3_small" => {
            let weights = if args.model == "mobilenet_v3_large" {
                MobileNetV3LargeWeights::DEFAULT.into()
            } else {
                MobileNetV3SmallWeights::DEFAULT.into()
            };
            let model = match &args.weights {
                Some(path) => MobileNetV3::from_file(weights, path, device),
                None => MobileNetV3::pretrained(weights, device),
            }
            .map_err(error)?;
            let info = mobilenet_burn::pretrained::MobileNetV3Weights::info(weights);
            Ok((Box::new(move |x| model.forward(x)), info))
        }
        other => Err(format!("unknown model `{other}`\n{USAGE}")),
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|error| {
        eprintln!("error: {error}\n{USAGE}");
        std::process::exit(2);
    });
    let device = Device::flex();
    let (forward, info) = classifier(&args, &device).unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1);
    });
    let transform: EvalTransform = info.transform;
    for path in &args.images {
        let image = match transform.apply_file(path, &device) {
            Ok(image) => image,
            Err(error) => {
                eprintln!("error: {error}");
                std::process::exit(1);
            }
        };
        println!("{} ({} {}):", path.display(), args.model, info.name);
        for (class, probability) in &top_k(forward(image), 5)[0] {
            println!(
                "  {:6.2}%  {}",
                probability * 100.0,
                info.categories[*class]
            );
        }
    }
}
