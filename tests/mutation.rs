//! A seeded mutation test of every loader, on stable Rust: valid files (zip and legacy
//! checkpoints, safetensors, burnpack, PNG, JPEG) with bits flipped, cut short, header bytes
//! overwritten, numbers in their headers replaced by extreme ones, ranges zeroed and bytes
//! inserted, thousands of cases in all. Each must load or give a typed error, never panic. The
//! cargo-fuzz targets (`fuzz/`) search further with coverage feedback; this keeps regressions
//! out without nightly. Table printed with `--nocapture`; results in `docs/reliability.md`.
#![cfg(feature = "pretrained")]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use burn::tensor::Device;
use common::training::train_case;
use mobilenet_burn::pretrained::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD, load_rgb_image};
use mobilenet_burn::{Error, MobileNetV2Config};

/// SplitMix64: the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Numbers that break size arithmetic.
const EXTREMES: [&str; 8] = [
    "0",
    "1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "99999999999999999999999",
    "2147483648",
    "65536",
];

/// One mutation of `bytes`, and what it was.
fn mutate(bytes: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut out = bytes.to_vec();
    let len = out.len().max(1);
    match rng.below(7) {
        0 => {
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                let at = rng.below(len);
                if let Some(byte) = out.get_mut(at) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            (out, format!("{flips} bit flips"))
        }
        1 => {
            let at = rng.below(len);
            out.truncate(at);
            (out, format!("cut to {at} bytes"))
        }
        2 => {
            // The header: the first 512 bytes hold the formats' sizes, offsets and magic.
            let count = 1 + rng.below(16);
            for _ in 0..count {
                let at = rng.below(len.min(512));
                let value = [0x00, 0xFF, 0x7F, 0x80][rng.below(4)];
                if let Some(byte) = out.get_mut(at) {
                    *byte = value;
                }
            }
            (out, format!("{count} header bytes overwritten"))
        }
        3 => {
            // A run of ASCII digits (safetensors' JSON, zip names) replaced by an extreme.
            let runs: Vec<(usize, usize)> = digit_runs(&out[..out.len().min(1 << 16)]);
            if runs.is_empty() {
                out.truncate(len / 2);
                return (out, "cut in half (no digits)".into());
            }
            let (start, end) = runs[rng.below(runs.len())];
            let value = EXTREMES[rng.below(EXTREMES.len())];
            out.splice(start..end, value.bytes());
            (out, format!("number at {start} set to {value}"))
        }
        4 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(4096)).min(out.len());
            out[start.min(end)..end].fill(0);
            (out, format!("bytes {start}..{end} zeroed"))
        }
        5 => {
            let at = rng.below(len);
            let count = 1 + rng.below(64);
            let noise: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
            let at = at.min(out.len());
            out.splice(at..at, noise);
            (out, format!("{count} bytes inserted at {at}"))
        }
        _ => {
            // A block copied from elsewhere in the file over another place.
            let from = rng.below(len);
            let to = rng.below(len);
            let count = (1 + rng.below(256)).min(out.len() - from.max(to).min(out.len()));
            let block = out[from..from + count].to_vec();
            out[to..to + count].copy_from_slice(&block);
            (out, format!("{count} bytes copied from {from} to {to}"))
        }
    }
}

fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, byte) in bytes.iter().enumerate() {
        match (byte.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Runs `cases` mutations of `original` through `load`; the panics, if any, with how to
/// reproduce them. Prints a line of the outcome counts.
fn run(
    name: &str,
    original: &[u8],
    seed: u64,
    cases: usize,
    load: impl Fn(&Path) -> Result<(), Error>,
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let mut rng = Rng(seed);
    let (mut loaded, mut errors, mut panics) = (0, 0, Vec::new());
    for case in 0..cases {
        let (bytes, what) = mutate(original, &mut rng);
        std::fs::write(&path, &bytes).unwrap();
        match catch_unwind(AssertUnwindSafe(|| load(&path))) {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(_)) => errors += 1,
            Err(_) => panics.push(format!("{name} case {case} (seed {seed}): {what}")),
        }
    }
    println!(
        "| {name} | {cases} | {loaded} | {errors} | {} |",
        panics.len()
    );
    panics
}

fn device() -> Device {
    common::cpu_device()
}

#[test]
fn mutated_files_load_or_give_typed_errors() {
    let v3s = train_case("v3s_w025");
    let model = v3s.v3_config().init(&device());
    let load_v3s =
        |path: &Path| -> Result<(), Error> { model.clone().load_torchvision(path).map(|_| ()) };
    let v2 = common::case("v2_w025_legacy");
    let v2_model = MobileNetV2Config::new()
        .with_width_mult(v2.width_mult)
        .with_num_classes(v2.num_classes)
        .init(&device());
    let load_v2 =
        |path: &Path| -> Result<(), Error> { v2_model.clone().load_torchvision(path).map(|_| ()) };
    let load_burnpack =
        |path: &Path| -> Result<(), Error> { model.clone().load_burnpack(path).map(|_| ()) };
    let eval = EvalTransform {
        resize_size: 40,
        crop_size: 32,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        interpolation: mobilenet_burn::pretrained::ResizeInterpolation::Bilinear,
    };
    let load_image = |path: &Path| -> Result<(), Error> {
        let image = load_rgb_image(path)?;
        // Decoded images go on through the transform, whatever size they claim.
        if u64::from(image.width()) * u64::from(image.height()) <= 1 << 22 {
            let _ = eval.apply(&image, &device());
        }
        Ok(())
    };

    let read = |path: &Path| std::fs::read(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let burnpack = dir.path().join("v3s.bpk");
    model.save_burnpack(&burnpack).unwrap();
    let picture =
        image::RgbImage::from_fn(37, 29, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 99]));
    let png = dir.path().join("picture.png");
    let jpeg = dir.path().join("picture.jpg");
    picture.save(&png).unwrap();
    picture.save(&jpeg).unwrap();

    println!("| file | cases | loaded | typed errors | panics |\n|---|---:|---:|---:|---:|");
    let mut panics = Vec::new();
    panics.extend(run(
        "zip.pth",
        &read(&v3s.checkpoint_path()),
        1,
        700,
        load_v3s,
    ));
    let legacy = common::fixtures().join(&v2.checkpoint);
    panics.extend(run("legacy.pth", &read(&legacy), 2, 700, load_v2));
    let half = common::fixtures().join("wrapped/float16.safetensors");
    panics.extend(run("model.safetensors", &read(&half), 3, 700, load_v3s));
    panics.extend(run("model.bpk", &read(&burnpack), 4, 700, load_burnpack));
    panics.extend(run("picture.png", &read(&png), 5, 600, load_image));
    panics.extend(run("picture.jpg", &read(&jpeg), 6, 600, load_image));
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
}
