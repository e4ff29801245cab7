//! A short fine-tuning run end to end, as `examples/finetune.rs` does it: an image folder on
//! disk, torchvision's training transforms, batches decoded in parallel, SGD steps on burn's
//! API. On two easily told classes the loss must fall and the accuracy rise.
#![cfg(all(feature = "pretrained", feature = "flex"))]

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use mobilenet_burn::MobileNetV3Config;
use mobilenet_burn::data::{ImageFolder, TrainTransform};
use mobilenet_burn::training::torch_sgd;

/// Two classes, eight images each: warm discs on a dark ground, cool squares on a light one.
fn make_folder(root: &std::path::Path) {
    for (label, class) in ["cool_squares", "warm_discs"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for index in 0..8u32 {
            let image = image::RgbImage::from_fn(40, 40, |x, y| {
                let (dx, dy) = (x as i32 - 18 - index as i32 % 4, y as i32 - 20);
                let inside = if label == 1 {
                    dx * dx + dy * dy < 150
                } else {
                    dx.abs() < 11 && dy.abs() < 11
                };
                match (label, inside) {
                    (1, true) => image::Rgb([230, 90 + index as u8 * 5, 30]),
                    (1, false) => image::Rgb([30, 30, 40]),
                    (_, true) => image::Rgb([40, 120, 220 - index as u8 * 5]),
                    (_, false) => image::Rgb([210, 210, 200]),
                }
            });
            image
                .save(root.join(format!("{class}/{index}.png")))
                .unwrap();
        }
    }
}

#[test]
fn a_short_fine_tuning_run_learns() {
    let root = tempfile::tempdir().unwrap();
    make_folder(root.path());
    let dataset = ImageFolder::new(root.path()).unwrap();
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut model = MobileNetV3Config::small()
        .with_width_mult(0.5)
        .with_num_classes(2)
        .with_dropout(0.0)
        .init(&device);
    let mut transform = TrainTransform::imagenet(32);
    transform.crop.scale.0 = 0.5;
    let mut optimizer = torch_sgd(0.9, 0.0).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let indices: Vec<usize> = (0..dataset.len()).collect();
    let mut history = Vec::new();
    for epoch in 0..12u64 {
        let (x, y) = dataset
            .batch(&indices, &transform, 1, epoch, &device)
            .unwrap();
        let logits = model.forward(x);
        let predicted = logits.clone().argmax(1).squeeze_dim::<1>(1);
        let correct = predicted.equal(y.clone()).int().sum().into_scalar::<i64>();
        let loss = loss_fn.forward(logits, y);
        history.push((loss.clone().into_scalar::<f32>(), correct));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.05, model, grads);
    }
    let mean = |part: &[(f32, i64)]| {
        let loss = part.iter().map(|h| h.0).sum::<f32>() / part.len() as f32;
        let accuracy = part.iter().map(|h| h.1).sum::<i64>() as f32 / (16 * part.len()) as f32;
        (loss, accuracy)
    };
    let (first, last) = (mean(&history[..3]), mean(&history[9..]));
    assert!(
        last.0 < 0.7 * first.0 && last.1 > first.1 && last.1 >= 0.9,
        "loss {:.3} -> {:.3}, accuracy {:.2} -> {:.2}: {history:?}",
        first.0,
        last.0,
        first.1,
        last.1
    );
}
