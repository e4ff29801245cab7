//! timm's MobileNetV4 block strings (`uir_r1_a5_k5_s2_e3_c32`) as table rows, for the V4 tests.

use mobilenet_burn::tables::{V4Block, V4Row};

/// A timm block string as a table row.
pub fn parse_row(text: &str) -> V4Row {
    let mut parts = text.split('_');
    let kind = parts.next().expect("block kind");
    let mut options = std::collections::BTreeMap::new();
    for part in parts {
        let split = part
            .find(|c: char| c.is_ascii_digit())
            .expect("option value");
        options.insert(part[..split].to_string(), part[split..].to_string());
    }
    let int = |key: &str| {
        options
            .get(key)
            .map_or(0, |v| v.parse::<usize>().expect("int"))
    };
    let float = |key: &str| options[key].parse::<f64>().expect("float");
    let block = match kind {
        "cn" => V4Block::Conv {
            kernel: int("k"),
            stride: int("s"),
            out_channels: int("c"),
        },
        "er" => V4Block::FusedIb {
            kernel: int("k"),
            stride: int("s"),
            expansion: float("e"),
            out_channels: int("c"),
        },
        "uir" => V4Block::Uib {
            start_kernel: int("a"),
            mid_kernel: int("k"),
            stride: int("s"),
            expansion: float("e"),
            out_channels: int("c"),
        },
        "mqa" => V4Block::Mqa {
            kernel: int("k"),
            heads: int("h"),
            key_dim: int("d"),
            kv_stride: int("v").max(1),
            out_channels: int("c"),
        },
        other => panic!("unknown block kind {other}"),
    };
    V4Row {
        repeats: int("r"),
        block,
    }
}
