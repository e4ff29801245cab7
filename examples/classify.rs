//! Classifies photos with torchvision's ImageNet weights (or timm's, for MobileNetV4) and prints
//! the top-5 labels.
//!
//! ```text
//! cargo run --release --features pretrained --example classify -- assets/chelsea.png
//! cargo run --release --features pretrained --example classify -- \
//!     --model mobilenet_v2 --weights mobilenet_v2-7ebf99e0.pth photo1.jpg photo2.png
//! cargo run --release --features pretrained --example classify -- \
//!     --model mobilenetv4_conv_small.e2400_r224_in1k assets/chelsea.png
//! ```
//!
//! Without `--weights`, the model's DEFAULT weights are downloaded once into the cache
//! (`MOBILENET_BURN_CACHE`, else the user's cache directory); with it, nothing touches the
//! network. A MobileNetV4 is named as timm names its checkpoints (`mobilenetv4_conv_small` alone
//! takes timm's default tag); its preprocessing is timm's (bicubic, `crop_pct`). Runs on the
//! flex CPU backend.

use std::path::PathBuf;

use burn::tensor::Device;
use mobilenet_burn::pretrained::{
    EvalTransform, MobileNetV2Weights, MobileNetV3LargeWeights, MobileNetV3SmallWeights,
    MobileNetV4Weights, top_k,
};
use mobilenet_burn::{Error, MobileNetV2, MobileNetV3, MobileNetV4};

const USAGE: &str = "usage: classify [--model mobilenet_v3_large|mobilenet_v3_small|mobilenet_v2|\
                     mobilenetv4_<size>[.<tag>]] [--weights FILE] IMAGE...";

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

/// A classifier: the model's forward pass and what its weights need and name.
struct Classifier {
    forward: Box<dyn Fn(burn::tensor::Tensor<4>) -> burn::tensor::Tensor<2>>,
    transform: EvalTransform,
    categories: &'static [&'static str],
    name: &'static str,
}

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
            let info = weights.info();
            Ok(Classifier {
                forward: Box::new(move |x| model.forward(x)),
                transform: info.transform,
                categories: info.categories,
                name: info.name,
            })
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
            Ok(Classifier {
                forward: Box::new(move |x| model.forward(x)),
                transform: info.transform,
                categories: info.categories,
                name: info.name,
            })
        }
        name if name.starts_with("mobilenetv4_") => {
            let found = MobileNetV4Weights::default_for(name).or_else(|| {
                MobileNetV4Weights::ALL
                    .into_iter()
                    .find(|weights| weights.info().name == name)
            });
            let Some(weights) = found else {
                let names: Vec<&str> = MobileNetV4Weights::ALL
                    .iter()
                    .map(|weights| weights.info().name)
                    .collect();
                return Err(format!(
                    "unknown model `{name}`; timm's: {}",
                    names.join(", ")
                ));
            };
            let model = match &args.weights {
                Some(path) => MobileNetV4::from_file(weights, path, device),
                None => MobileNetV4::pretrained(weights, device),
            }
            .map_err(error)?
            .fuse();
            let info = weights.info();
            Ok(Classifier {
                forward: Box::new(move |x| model.forward(x)),
                transform: info.transform,
                categories: info.categories,
                name: info.name,
            })
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
    let classifier = classifier(&args, &device).unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1);
    });
    let transform = classifier.transform;
    for path in &args.images {
        let image = match transform.apply_file(path, &device) {
            Ok(image) => image,
            Err(error) => {
                eprintln!("error: {error}");
                std::process::exit(1);
            }
        };
        println!("{} ({} {}):", path.display(), args.model, classifier.name);
        for (class, probability) in &top_k((classifier.forward)(image), 5)[0] {
            println!(
                "  {:6.2}%  {}",
                probability * 100.0,
                classifier.categories[*class]
            );
        }
    }
}
