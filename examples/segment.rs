//! Semantic segmentation with torchvision's LR-ASPP or DeepLabV3 on MobileNetV3-Large (COCO
//! images, Pascal VOC's 20 classes and the background).
//!
//! ```text
//! cargo run --release --features pretrained --example segment -- assets/chelsea.png
//! cargo run --release --features pretrained --example segment -- --model deeplabv3 \
//!     --weights deeplabv3_mobilenet_v3_large-fc3c493d.pth --out mask.png IMAGE
//! ```
//!
//! Without `--weights` the weights are downloaded once into the cache (`MOBILENET_BURN_CACHE`,
//! else `~/.cache/mobilenet-burn`); `--weights FILE` must be torchvision's file (its hash is
//! checked), `--own-weights FILE` takes a checkpoint of one's own in the same layout (a
//! fine-tuned model). The image goes through torchvision's evaluation transform (shorter side
//! to 520, normalized), the model runs fused on burn-flex, and the per-pixel classes are
//! mapped back to the photo. Prints each class's share of the pixels, and writes the photo
//! with the classes blended over it in Pascal VOC's colours and a legend of the classes found
//! (`--out`, default `segmentation.png`).

#[path = "common/font5x7.rs"]
mod font5x7;

use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use image::{Rgb, RgbImage};
use mobilenet_burn::Error;
use mobilenet_burn::pretrained::{
    DeepLabV3MobileNetV3LargeWeights, LrAsppMobileNetV3LargeWeights, SegmentationWeightsInfo,
    load_rgb_image, save_rgb_image,
};
use mobilenet_burn::segmentation::{DeepLabV3, LrAspp};

const USAGE: &str = "usage: segment [--model lraspp|deeplabv3] [--weights FILE | --own-weights FILE] \
                     [--alpha 0.6] [--out segmentation.png] IMAGE";

struct Args {
    model: String,
    weights: Option<(PathBuf, bool)>,
    alpha: f32,
    out: PathBuf,
    image: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        model: "lraspp".into(),
        weights: None,
        alpha: 0.6,
        out: PathBuf::from("segmentation.png"),
        image: PathBuf::new(),
    };
    let mut image = None;
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => {
                parsed.model = value()?;
                if !["lraspp", "deeplabv3"].contains(&parsed.model.as_str()) {
                    return Err(format!(
                        "unknown model `{}`; use lraspp or deeplabv3",
                        parsed.model
                    ));
                }
            }
            "--weights" => parsed.weights = Some((PathBuf::from(value()?), true)),
            "--own-weights" => parsed.weights = Some((PathBuf::from(value()?), false)),
            "--alpha" => {
                parsed.alpha = value()?
                    .parse::<f32>()
                    .ok()
                    .filter(|a| (0.0..=1.0).contains(a))
                    .ok_or("--alpha needs a number in [0, 1]")?
            }
            "--out" => parsed.out = PathBuf::from(value()?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            path if image.is_none() => image = Some(PathBuf::from(path)),
            extra => return Err(format!("one image at a time; unexpected `{extra}`")),
        }
    }
    parsed.image = image.ok_or("no image given")?;
    Ok(parsed)
}

/// Pascal VOC's colour of class `label` (the dataset's palette: the label's bits spread over
/// the high bits of red, green and blue).
fn voc_colour(label: usize) -> [u8; 3] {
    let (mut rgb, mut c) = ([0u8; 3], label);
    for bit in 0..8 {
        for (channel, value) in rgb.iter_mut().enumerate() {
            *value |= (((c >> channel) & 1) as u8) << (7 - bit);
        }
        c >>= 3;
    }
    rgb
}

/// The model's per-pixel logits for one transformed image, `[1, 21, height, width]`.
fn logits(
    args: &Args,
    x: Tensor<4>,
    device: &Device,
) -> Result<(Tensor<4>, &'static SegmentationWeightsInfo), Error> {
    if args.model == "deeplabv3" {
        let weights = DeepLabV3MobileNetV3LargeWeights::DEFAULT;
        eprintln!(
            "loading DeepLabV3 MobileNetV3-Large ({}) ...",
            weights.info().name
        );
        let model = match &args.weights {
            Some((path, true)) => DeepLabV3::from_file(weights, path, device)?,
            Some((path, false)) => DeepLabV3::from_file_unverified(weights, path, device)?,
            None => DeepLabV3::pretrained(weights, device)?,
        }
        .fuse();
        Ok((model.forward(x), weights.info()))
    } else {
        let weights = LrAsppMobileNetV3LargeWeights::DEFAULT;
        eprintln!(
            "loading LR-ASPP MobileNetV3-Large ({}) ...",
            weights.info().name
        );
        let model = match &args.weights {
            Some((path, true)) => LrAspp::from_file(weights, path, device)?,
            Some((path, false)) => LrAspp::from_file_unverified(weights, path, device)?,
            None => LrAspp::pretrained(weights, device)?,
        }
        .fuse();
        Ok((model.forward(x), weights.info()))
    }
}

/// The photo with each pixel's class blended over it (the background left as it is), and a
/// legend of `found` (class, share) below it.
fn picture(
    photo: &RgbImage,
    classes: &dyn Fn(u32, u32) -> usize,
    found: &[(usize, f64)],
    names: &[&str],
    alpha: f32,
) -> RgbImage {
    let (width, height) = photo.dimensions();
    let scale = 2;
    let swatch = font5x7::text_height(scale);
    let line = swatch + 6;
    let text = |label: usize, share: f64| {
        format!("{} {:.1}%", names[label].trim_matches('_'), share * 100.0)
    };
    let legend_width = found
        .iter()
        .map(|&(label, share)| 18 + swatch + font5x7::text_width(&text(label, share), scale))
        .max()
        .unwrap_or(0);
    let legend_height = 8 + line * found.len() as u32;
    let mut canvas = RgbImage::from_pixel(
        width.max(legend_width),
        height + legend_height,
        Rgb([255, 255, 255]),
    );
    for (x, y, pixel) in photo.enumerate_pixels() {
        let label = classes(x, y);
        let blended = if label == 0 {
            pixel.0
        } else {
            let colour = voc_colour(label);
            std::array::from_fn(|c| {
                (f32::from(pixel.0[c]) * (1.0 - alpha) + f32::from(colour[c]) * alpha).round() as u8
            })
        };
        canvas.put_pixel(x, y, Rgb(blended));
    }
    for (row, &(label, share)) in found.iter().enumerate() {
        let top = height + 6 + row as u32 * line;
        // The background's swatch is VOC's black: it is left unblended in the picture.
        for y in top..top + swatch {
            for x in 6..6 + swatch {
                canvas.put_pixel(x, y, Rgb(voc_colour(label)));
            }
        }
        font5x7::draw_text(&text(label, share), 12 + swatch, top, scale, |x, y| {
            if x < canvas.width() && y < canvas.height() {
                canvas.put_pixel(x, y, Rgb([0, 0, 0]));
            }
        });
    }
    canvas
}

fn run(args: &Args) -> Result<(), Error> {
    let device = Device::flex();
    let photo = load_rgb_image(&args.image)?;
    // Both weights share torchvision's `SemanticSegmentation(resize_size=520)`.
    let transform = LrAsppMobileNetV3LargeWeights::DEFAULT.info().transform;
    let x = transform.apply(&photo, &device).unsqueeze::<4>();
    let started = std::time::Instant::now();
    let (logits, info) = logits(args, x, &device)?;
    let [_, _, mask_height, mask_width] = logits.dims();
    let mask: Vec<i64> = logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .map_err(|error| Error::InvalidInput {
            shape: vec![mask_height, mask_width],
            expected: format!("integer classes ({error:?})"),
        })?;
    eprintln!(
        "{mask_width}x{mask_height} mask in {:.0} ms (loading, network, argmax)",
        started.elapsed().as_secs_f64() * 1e3
    );
    // Each photo pixel takes the class of the mask pixel it falls in (nearest).
    let (width, height) = photo.dimensions();
    let classes = |x: u32, y: u32| -> usize {
        let mx = (x as usize * mask_width / width as usize).min(mask_width - 1);
        let my = (y as usize * mask_height / height as usize).min(mask_height - 1);
        mask[my * mask_width + mx] as usize
    };
    let names = info.categories;
    let mut counts = vec![0usize; names.len()];
    for &label in &mask {
        counts[label as usize] += 1;
    }
    let mut found: Vec<(usize, f64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(label, &count)| (label, count as f64 / mask.len() as f64))
        .collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("| class | pixels |\n|---|---:|");
    for &(label, share) in &found {
        println!("| {} | {:.2}% |", names[label], share * 100.0);
    }
    let canvas = picture(&photo, &classes, &found, names, args.alpha);
    // Written beside the target and renamed: no half-written picture is left.
    save_rgb_image(&canvas, &args.out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn main() {
    let args = parse_args().unwrap_or_else(|error| {
        eprintln!("error: {error}\n{USAGE}");
        std::process::exit(2);
    });
    if let Err(error) = run(&args) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
