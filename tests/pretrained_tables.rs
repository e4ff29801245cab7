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
