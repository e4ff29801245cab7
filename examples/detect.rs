//! Object detection with SSDLite320 on MobileNetV3-Large: torchvision's COCO model.
//!
//! ```text
//! cargo run --release --features pretrained --example detect -- assets/chelsea.png
//! cargo run --release --features pretrained --example detect -- \
//!     --weights ssdlite320_mobilenet_v3_large_coco-a79551df.pth --min-score 0.4 \
//!     --out detections.png IMAGE
//! ```
//!
//! Without `--weights` the COCO weights are downloaded once into the cache
//! (`MOBILENET_BURN_CACHE`, else `~/.cache/mobilenet-burn`). Prints every detection at or above
//! `--min-score` (default 0.5) with its COCO label, score and box in image pixels, and writes a
//! copy of the image with those boxes and labels drawn (`--out`, default `detections.png`).
//! Runs on burn-flex with BatchNorm folded, as for inference.

#[path = "common/font5x7.rs"]
mod font5x7;

use std::path::PathBuf;

use burn::tensor::Device;
use image::{Rgb, RgbImage};
use mobilenet_burn::Error;
use mobilenet_burn::detection::{Detections, SsdLite, image_to_tensor};
use mobilenet_burn::pretrained::{
    SsdLite320MobileNetV3LargeWeights, load_rgb_image, save_rgb_image,
};

const USAGE: &str = "usage: detect [--weights FILE] [--min-score 0.5] [--out detections.png] IMAGE";

/// Colours of the boxes, by label.
const COLOURS: [[u8; 3]; 6] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
];

struct Args {
    weights: Option<PathBuf>,
    min_score: f32,
    out: PathBuf,
    image: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut weights, mut min_score, mut out, mut image) =
        (None, 0.5, PathBuf::from("detections.png"), None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--weights" => weights = Some(PathBuf::from(value()?)),
            "--min-score" => {
                min_score = value()?
                    .parse::<f32>()
                    .ok()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or("--min-score needs a number in [0, 1]")?
            }
            "--out" => out = PathBuf::from(value()?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            path if image.is_none() => image = Some(PathBuf::from(path)),
            extra => return Err(format!("one image at a time; unexpected `{extra}`")),
        }
    }
    Ok(Args {
        weights,
        min_score,
        out,
        image: image.ok_or("no image given")?,
    })
}

/// Draws each detection's box (2 pixels wide) and a label tag above it.
fn draw(image: &mut RgbImage, detections: &Detections, names: &[&str], min_score: f32) {
    let (width, height) = image.dimensions();
    for detection in detections.above(min_score).iter() {
        let (b, score, label) = (detection.bbox, detection.score, detection.label);
        let colour = Rgb(COLOURS[label % COLOURS.len()]);
        let clamp_x = |v: f32| (v.max(0.0) as u32).min(width - 1);
        let clamp_y = |v: f32| (v.max(0.0) as u32).min(height - 1);
        let (x1, y1, x2, y2) = (clamp_x(b[0]), clamp_y(b[1]), clamp_x(b[2]), clamp_y(b[3]));
        for thickness in 0..2u32 {
            for x in x1..=x2 {
                image.put_pixel(x, (y1 + thickness).min(y2), colour);
                image.put_pixel(x, y2.saturating_sub(thickness).max(y1), colour);
            }
            for y in y1..=y2 {
                image.put_pixel((x1 + thickness).min(x2), y, colour);
                image.put_pixel(x2.saturating_sub(thickness).max(x1), y, colour);
            }
        }
        let text = format!("{} {:.0}%", names.get(label).unwrap_or(&"?"), score * 100.0);
        let (text_w, text_h) = (
            font5x7::text_width(&text, 1) + 4,
            font5x7::text_height(1) + 2,
        );
        let tag_y = y1.saturating_sub(text_h);
        for y in tag_y..(tag_y + text_h).min(height) {
            for x in x1..(x1 + text_w).min(width) {
                image.put_pixel(x, y, colour);
            }
        }
        font5x7::draw_text(&text, x1 + 2, tag_y + 1, 1, |x, y| {
            if x < width && y < height {
                image.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        });
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let device = Device::flex();
    let weights = SsdLite320MobileNetV3LargeWeights::DEFAULT;
    eprintln!(
        "loading SSDLite320 MobileNetV3-Large ({}) ...",
        weights.info().name
    );
    let detector = match &args.weights {
        Some(path) => SsdLite::from_file(weights, path, &device)?,
        None => SsdLite::pretrained(weights, &device)?,
    }
    .fuse();
    let image = load_rgb_image(&args.image)?;
    let started = std::time::Instant::now();
    let detections = detector
        .detect(&[image_to_tensor(&image, &device)])?
        .remove(0);
    eprintln!(
        "{} detections in {:.1} ms (transform, network, NMS)",
        detections.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let names = weights.info().categories;
    println!("| label | score | box (x1, y1, x2, y2) |\n|---|---:|---|");
    for detection in detections.above(args.min_score).iter() {
        let (b, score, label) = (detection.bbox, detection.score, detection.label);
        println!(
            "| {} | {score:.3} | ({:.1}, {:.1}, {:.1}, {:.1}) |",
            names.get(label).unwrap_or(&"?"),
            b[0],
            b[1],
            b[2],
            b[3]
        );
    }
    let mut drawn = image.clone();
    draw(&mut drawn, &detections, names, args.min_score);
    // Written beside the target and renamed: no half-written picture is left.
    save_rgb_image(&drawn, &args.out)?;
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
