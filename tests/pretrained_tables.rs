//! The weights tables equal torchvision's own metadata, as `scripts/make_pretrained_fixtures.py`
//! dumped it from torchvision 0.29.2: URLs, hash prefixes, metrics, parameter counts,
//! categories and evaluation transforms.
#![cfg(feature = "pretrained")]

mod common;

use mobilenet_burn::pretrained::{
    MobileNetV2Weights, MobileNetV3LargeWeights, MobileNetV3SmallWeights, WeightsInfo,
};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Transform {
    resize_size: Vec<u32>,
    crop_size: Vec<u32>,
    mean: Vec<f64>,
    std: Vec<f64>,
    interpolation: String,
    antialias: bool,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    url: String,
    sha256_prefix: String,
    num_params: usize,
    acc1: f64,
    acc5: f64,
    categories: Vec<String>,
    transform: Transform,
}

#[derive(Deserialize)]
struct Enum {
    default: String,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Meta {
    enums: BTreeMap<String, Enum>,
}

fn torchvision() -> BTreeMap<String, Enum> {
    let text = std::fs::read_to_string(common::fixtures().join("weights_meta.json"))
        .expect("weights_meta.json");
    serde_json::from_str::<Meta>(&text).expect("json").enums
}

fn assert_entry(ours: &WeightsInfo, theirs: &Entry) {
    let name = &theirs.name;
    assert_eq!(ours.name, theirs.name);
    assert_eq!(ours.url, theirs.url, "{name}");
    assert_eq!(ours.sha256_prefix, theirs.sha256_prefix, "{name}");
    assert_eq!(ours.num_params, theirs.num_params, "{name}");
    assert_eq!((ours.acc1, ours.acc5), (theirs.acc1, theirs.acc5), "{name}");
    assert_eq!(ours.num_classes, theirs.categories.len(), "{name}");
    assert_eq!(ours.categories, theirs.categories.as_slice(), "{name}");
    let transform = &theirs.transform;
    assert_eq!(
        vec![ours.transform.resize_size],
        transform.resize_size,
        "{name}"
    );
    assert_eq!(
        vec![ours.transform.crop_size],
        transform.crop_size,
        "{name}"
    );
    // Our constants are f32, as the tensors they normalize; torchvision's are Python floats.
    let as_f32 = |values: &[f64]| values.iter().map(|&v| v as f32).collect::<Vec<_>>();
    assert_eq!(
        ours.transform.mean.to_vec(),
        as_f32(&transform.mean),
        "{name}"
    );
    assert_eq!(
        ours.transform.std.to_vec(),
        as_f32(&transform.std),
        "{name}"
    );
    // The only interpolation this crate implements: bilinear with antialiasing.
    assert_eq!(
        (transform.interpolation.as_str(), transform.antialias),
        ("bilinear", true)
    );
}

#[test]
fn weights_tables_equal_torchvisions() {
    let enums = torchvision();
    let ours: [(&str, Vec<&WeightsInfo>, &WeightsInfo); 3] = [
        (
            "MobileNetV2Weights",
            vec![
                MobileNetV2Weights::ImageNet1kV1.info(),
                MobileNetV2Weights::ImageNet1kV2.info(),
            ],
            MobileNetV2Weights::DEFAULT.info(),
        ),
        (
            "MobileNetV3LargeWeights",
            vec![
                MobileNetV3LargeWeights::ImageNet1kV1.info(),
                MobileNetV3LargeWeights::ImageNet1kV2.info(),
            ],
            MobileNetV3LargeWeights::DEFAULT.info(),
        ),
        (
            "MobileNetV3SmallWeights",
            vec![MobileNetV3SmallWeights::ImageNet1kV1.info()],
            MobileNetV3SmallWeights::DEFAULT.info(),
        ),
    ];
    for (name, entries, default) in ours {
        let theirs = &enums[name];
        assert_eq!(
            entries.len(),
            theirs.entries.len(),
            "{name}: number of entries"
        );
        for (ours, theirs) in entries.iter().zip(&theirs.entries) {
            assert_entry(ours, theirs);
        }
        assert_eq!(default.name, theirs.default, "{name}: DEFAULT");
    }
}

#[test]
fn file_names_carry_the_hash_prefix() {
    let info = MobileNetV3LargeWeights::ImageNet1kV2.info();
    assert_eq!(info.file_name(), "mobilenet_v3_large-5c1a4163.pth");
    assert!(info.file_name().contains(info.sha256_prefix));
}

#[derive(Deserialize)]
struct DetectionEntry {
    name: String,
    url: String,
    sha256_prefix: String,
    num_params: usize,
    box_map: f64,
    gflops: f64,
    categories: Vec<String>,
}

#[derive(Deserialize)]
struct DetectionMeta {
    default: String,
    entries: Vec<DetectionEntry>,
}

#[test]
fn ssdlite_weights_table_equals_torchvisions() {
    use mobilenet_burn::pretrained::SsdLite320MobileNetV3LargeWeights;
    let text = std::fs::read_to_string(common::fixtures().join("ssdlite_weights_meta.json"))
        .expect("ssdlite_weights_meta.json");
    let theirs: DetectionMeta = serde_json::from_str(&text).expect("json");
    let ours = [SsdLite320MobileNetV3LargeWeights::CocoV1.info()];
    assert_eq!(ours.len(), theirs.entries.len(), "number of entries");
    for (ours, theirs) in ours.iter().zip(&theirs.entries) {
        assert_eq!(ours.name, theirs.name);
        assert_eq!(ours.url, theirs.url);
        assert_eq!(ours.sha256_prefix, theirs.sha256_prefix);
        assert_eq!(ours.num_params, theirs.num_params);
        assert_eq!(ours.box_map, theirs.box_map);
        assert_eq!(ours.categories, theirs.categories.as_slice());
    }
    assert_eq!(
        SsdLite320MobileNetV3LargeWeights::DEFAULT.info().name,
        theirs.default
    );
    // The configuration the weights load into has torchvision's parameter count.
    let device = common::cpu_device();
    let detector =
        mobilenet_burn::detection::SsdLiteConfig::mobilenet_v3_large(ours[0].num_classes())
            .init(&device);
    assert_eq!(detector.num_learnable_params(), ours[0].num_params);
    // And its multiply-adds are torchvision's published "GFLOPS" (given to 3 decimals).
    let summary = detector.summary();
    assert_eq!(summary.total_params(), ours[0].num_params);
    let gflops = summary.total_macs() as f64 / 1e9;
    println!("SSDLite320 MobileNetV3-Large: {gflops:.4} G multiply-adds");
    assert!(
        (gflops - theirs.entries[0].gflops).abs() <= 0.0005,
        "{gflops} vs torchvision's {}",
        theirs.entries[0].gflops
    );
}

#[derive(Deserialize)]
struct SegmentationEntry {
    name: String,
    url: String,
    sha256_prefix: String,
    num_params: usize,
    miou: f64,
    pixel_acc: f64,
    gflops: f64,
    categories: Vec<String>,
    resize_size: Vec<u32>,
    mean: Vec<f64>,
    std: Vec<f64>,
    interpolation: String,
    antialias: bool,
}

#[derive(Deserialize)]
struct SegmentationEnum {
    default: String,
    entries: Vec<SegmentationEntry>,
}

#[derive(Deserialize)]
struct SegmentationMeta {
    enums: BTreeMap<String, SegmentationEnum>,
}

#[test]
fn segmentation_weights_tables_equal_torchvisions() {
    use mobilenet_burn::pretrained::{
        DeepLabV3MobileNetV3LargeWeights, LrAsppMobileNetV3LargeWeights, SegmentationWeightsInfo,
    };
    use mobilenet_burn::segmentation::{DeepLabV3Config, LrAsppConfig};
    let text = std::fs::read_to_string(common::fixtures().join("segmentation/weights_meta.json"))
        .expect("segmentation/weights_meta.json");
    let theirs: SegmentationMeta = serde_json::from_str(&text).expect("json");
    let device = common::cpu_device();
    let lraspp = LrAsppConfig::mobilenet_v3_large(21).init(&device);
    let deeplab = DeepLabV3Config::mobilenet_v3_large(21)
        .with_aux_classifier(true)
        .init(&device);
    let ours: [(&str, &str, &SegmentationWeightsInfo, _); 2] = [
        (
            "LRASPP_MobileNet_V3_Large_Weights",
            LrAsppMobileNetV3LargeWeights::DEFAULT.info().name,
            LrAsppMobileNetV3LargeWeights::CocoWithVocLabelsV1.info(),
            lraspp.summary(520, 520),
        ),
        (
            "DeepLabV3_MobileNet_V3_Large_Weights",
            DeepLabV3MobileNetV3LargeWeights::DEFAULT.info().name,
            DeepLabV3MobileNetV3LargeWeights::CocoWithVocLabelsV1.info(),
            deeplab.summary(520, 520),
        ),
    ];
    assert_eq!(theirs.enums.len(), ours.len());
    for (enum_name, default, info, summary) in ours {
        let theirs = &theirs.enums[enum_name];
        assert_eq!(default, theirs.default, "{enum_name}: DEFAULT");
        assert_eq!(theirs.entries.len(), 1, "{enum_name}: one entry");
        let entry = &theirs.entries[0];
        assert_eq!(info.name, entry.name);
        assert_eq!(info.url, entry.url);
        assert_eq!(info.sha256_prefix, entry.sha256_prefix);
        assert_eq!(info.num_params, entry.num_params);
        assert_eq!((info.miou, info.pixel_acc), (entry.miou, entry.pixel_acc));
        assert_eq!(info.gflops, entry.gflops);
        assert_eq!(info.categories, entry.categories.as_slice());
        // `SemanticSegmentation(resize_size=520)`: Pillow's antialiased bilinear, ImageNet's
        // mean and std.
        assert_eq!(vec![info.transform.resize_size], entry.resize_size);
        let as_f64 = |v: [f32; 3]| v.map(f64::from).to_vec();
        let close = |a: Vec<f64>, b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-7);
        assert!(close(as_f64(info.transform.mean), &entry.mean));
        assert!(close(as_f64(info.transform.std), &entry.std));
        assert_eq!(
            (entry.interpolation.as_str(), entry.antialias),
            ("InterpolationMode.BILINEAR", true)
        );
        // The model the weights load into has torchvision's parameter count and multiply-adds
        // (given to 3 decimals).
        assert_eq!(summary.total_params(), info.num_params, "{enum_name}");
        let gflops = summary.total_macs() as f64 / 1e9;
        assert!(
            (gflops - entry.gflops).abs() <= 0.0005,
            "{enum_name}: {gflops} vs {}",
            entry.gflops
        );
    }
}

#[derive(Deserialize)]
struct TimmTransform {
    crop_pct: f64,
    interpolation: String,
    mean: Vec<f64>,
    std: Vec<f64>,
    resize_size: u32,
    crop_size: u32,
}

#[derive(Deserialize)]
struct TimmEntry {
    name: String,
    default: bool,
    architecture: String,
    hf_hub_id: String,
    num_classes: usize,
    params: usize,
    transform: TimmTransform,
    test_transform: Option<TimmTransform>,
    top1: f64,
    top5: f64,
    test_top1: Option<f64>,
    test_top5: Option<f64>,
}

#[derive(Deserialize)]
struct TimmMeta {
    entries: Vec<TimmEntry>,
}

fn assert_timm_transform(
    ours: &mobilenet_burn::pretrained::EvalTransform,
    theirs: &TimmTransform,
    name: &str,
) {
    use mobilenet_burn::pretrained::ResizeInterpolation;
    assert_eq!(ours.resize_size, theirs.resize_size, "{name}: resize");
    assert_eq!(ours.crop_size, theirs.crop_size, "{name}: crop");
    // The table's resize is timm's `floor(crop / crop_pct)`.
    assert_eq!(
        ours.resize_size,
        (f64::from(theirs.crop_size) / theirs.crop_pct).floor() as u32,
        "{name}: resize from crop_pct"
    );
    let interpolation = match theirs.interpolation.as_str() {
        "bicubic" => ResizeInterpolation::Bicubic,
        "bilinear" => ResizeInterpolation::Bilinear,
        other => panic!("{name}: interpolation {other}"),
    };
    assert_eq!(ours.interpolation, interpolation, "{name}: interpolation");
    for channel in 0..3 {
        assert_eq!(
            f64::from(ours.mean[channel]),
            theirs.mean[channel] as f32 as f64,
            "{name}: mean"
        );
        assert_eq!(
            f64::from(ours.std[channel]),
            theirs.std[channel] as f32 as f64,
            "{name}: std"
        );
    }
}

/// `MobileNetV4Weights` equals timm 1.0.31's `pretrained_cfg` of every ImageNet-1k checkpoint of
/// the five models (`scripts/make_v4_meta.py`): one entry each, hub file, parameter count, the
/// resolved eval transform at both sizes, and top-1 / top-5 from timm's results table.
#[test]
fn mobilenet_v4_weights_table_equals_timms() {
    use mobilenet_burn::MobileNetV4Config;
    use mobilenet_burn::pretrained::{IMAGENET_CATEGORIES, MobileNetV4Weights};
    let text = std::fs::read_to_string(common::fixtures().join("v4/pretrained_meta.json"))
        .expect("pretrained_meta.json");
    let meta: TimmMeta = serde_json::from_str(&text).expect("json");
    let ours: BTreeMap<&str, MobileNetV4Weights> = MobileNetV4Weights::ALL
        .iter()
        .map(|weights| (weights.info().name, *weights))
        .collect();
    assert_eq!(ours.len(), meta.entries.len(), "one entry per checkpoint");
    // `ALL` in timm's order, so that each architecture's first entry is timm's default.
    let order: Vec<&str> = MobileNetV4Weights::ALL
        .iter()
        .map(|weights| weights.info().name)
        .collect();
    let timm_order: Vec<&str> = meta.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(order, timm_order);
    for theirs in meta.entries.iter().filter(|entry| entry.default) {
        let default = MobileNetV4Weights::default_for(&theirs.architecture).expect("default");
        assert_eq!(default.info().name, theirs.name);
    }
    let device = common::cpu_device();
    for theirs in &meta.entries {
        let weights = ours[theirs.name.as_str()];
        let info = weights.info();
        let name = info.name;
        assert_eq!(info.architecture, theirs.architecture, "{name}");
        assert_eq!(
            info.url,
            format!(
                "https://huggingface.co/{}/resolve/main/model.safetensors",
                theirs.hf_hub_id
            ),
            "{name}: url"
        );
        assert_eq!(info.file_name, format!("{name}.safetensors"));
        assert_eq!(info.sha256, None, "{name}: no hash was recorded");
        assert_eq!(info.num_classes, theirs.num_classes, "{name}");
        assert_eq!(info.categories, IMAGENET_CATEGORIES.as_slice(), "{name}");
        assert_eq!(info.num_params, theirs.params, "{name}: parameters");
        assert_eq!((info.acc1, info.acc5), (theirs.top1, theirs.top5), "{name}");
        assert_eq!(
            info.test_acc,
            theirs.test_top1.zip(theirs.test_top5),
            "{name}: test-size accuracy"
        );
        assert_eq!(info.crop_pct, theirs.transform.crop_pct, "{name}: crop_pct");
        assert_timm_transform(&info.transform, &theirs.transform, name);
        match (&info.test_transform, &theirs.test_transform) {
            (Some(ours), Some(theirs)) => assert_timm_transform(ours, theirs, name),
            (None, None) => {}
            _ => panic!("{name}: test transform present on one side only"),
        }
        // The configuration builds the architecture the parameter count is of.
        let expected = match theirs.architecture.as_str() {
            "mobilenetv4_conv_small" => MobileNetV4Config::conv_small(),
            "mobilenetv4_conv_medium" => MobileNetV4Config::conv_medium(),
            "mobilenetv4_conv_large" => MobileNetV4Config::conv_large(),
            "mobilenetv4_hybrid_medium" => MobileNetV4Config::hybrid_medium(),
            "mobilenetv4_hybrid_large" => MobileNetV4Config::hybrid_large(),
            other => panic!("architecture {other}"),
        };
        let config = weights.config();
        assert_eq!(config.stages, expected.stages, "{name}: table");
        assert_eq!(config.activation, expected.activation, "{name}");
        assert_eq!(config.layer_scale, expected.layer_scale, "{name}");
        if theirs.architecture.ends_with("small") {
            assert_eq!(
                config.init(&device).num_learnable_params(),
                theirs.params,
                "{name}"
            );
        }
    }
}
