//! Is MobileNetV3 faster than V2 on this machine, and where does the time go?
//!
//! ```text
//! cargo run --release --all-features --example v2_vs_v3 -- [--backend flex|ndarray|wgpu] \
//!     [--runs 30] [--svg v2_vs_v3.svg]
//! ```
//!
//! Builds V2 1.0, V3-Large 1.0 and V3-Small 1.0 (random weights, batch norm fused, as for
//! inference) and three V3-Large ablations built from the table API: ReLU instead of h-swish,
//! no squeeze-excitation, reduced tail; and MobileNetV4 Conv-Small and Conv-Medium (timm's), the
//! sequel that drops SE and h-swish. Prints one markdown table of parameters, multiply-adds,
//! batch-1 latency (median and 10th-90th percentile, timed in interleaved rounds across the
//! models so that load from elsewhere hits all of them alike) and batch-8 throughput; the cost of h-swish
//! and SE in V3-Large as the latency the ablations save; and per-stage batch-1 latency (stem,
//! blocks grouped by output stride, head), which it also writes as an SVG bar chart.

#[path = "common/backend.rs"]
mod backend;

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use mobilenet_burn::{
    Activation, Features, MobileNetV2Config, MobileNetV3, MobileNetV3Config, MobileNetV4Config,
    native,
};

/// Untimed passes before measuring.
const WARM_UP: usize = 3;
/// Batch of the throughput measurement.
const THROUGHPUT_BATCH: usize = 8;
/// Image side.
const SIZE: usize = 224;

struct Args {
    backend: String,
    runs: usize,
    svg: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        backend: "flex".into(),
        runs: 30,
        svg: "v2_vs_v3.svg".into(),
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => parsed.backend = value()?,
            "--runs" => {
                parsed.runs = value()?
                    .parse()
                    .ok()
                    .filter(|&runs| runs > 0)
                    .ok_or("--runs needs a positive number")?
            }
            "--svg" => parsed.svg = value()?,
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(parsed)
}

/// Median and 10th/90th percentiles of wall times, in milliseconds.
#[derive(Clone, Copy)]
struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
}

/// Times `run` (which must wait for its result) `runs` times after a warm-up.
fn measure(runs: usize, mut run: impl FnMut()) -> Stats {
    for _ in 0..WARM_UP {
        run();
    }
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    stats(times)
}

/// Median and 10th/90th percentiles of `times` (ms).
fn stats(mut times: Vec<f64>) -> Stats {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
    }
}

/// Rounds of the interleaved batch-1 measurement.
const INTERLEAVED_ROUNDS: usize = 5;

/// Median and spread of batch-1 latency for each forward pass, timed in
/// [`INTERLEAVED_ROUNDS`] rounds that each run every model `runs / rounds` times in turn.
fn measure_interleaved(runs: usize, forwards: &[&Forward], input: &Tensor<4>) -> Vec<Stats> {
    let per_round = runs.div_ceil(INTERLEAVED_ROUNDS);
    let mut samples = vec![Vec::new(); forwards.len()];
    for forward in forwards {
        for _ in 0..WARM_UP {
            drop(forward(input.clone()).into_data());
        }
    }
    for _ in 0..INTERLEAVED_ROUNDS {
        for (forward, samples) in forwards.iter().zip(&mut samples) {
            for _ in 0..per_round {
                let start = Instant::now();
                drop(forward(input.clone()).into_data());
                samples.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    samples.into_iter().map(stats).collect()
}

/// A forward pass from one tensor to logits.
type Forward = Box<dyn Fn(Tensor<4>) -> Tensor<2>>;

/// A model under test: a name, its forward pass and its summary figures, and for the models
/// timed per stage, their trunk and head.
struct Candidate {
    name: String,
    params: usize,
    macs: u64,
    forward: Forward,
    features: Option<(Features, Forward)>,
}

fn v3(name: &str, config: MobileNetV3Config, device: &Device, per_stage: bool) -> Candidate {
    let model: MobileNetV3 = config.init(device);
    // Parameters as torchvision counts them: of the unfused model.
    let summary = model.summary(SIZE, SIZE);
    let model = model.fuse();
    let head_model = model.clone();
    Candidate {
        name: name.into(),
        params: summary.total_params(),
        macs: summary.total_macs(),
        features: per_stage.then(|| {
            let head: Forward = Box::new(move |x| head_model.forward_head(x));
            (model.features.clone(), head)
        }),
        forward: Box::new(move |x| model.forward(x)),
    }
}

/// MobileNetV4 (timm's), timed as a whole: its stages are not V2/V3's `Features`.
fn v4(name: &str, config: MobileNetV4Config, device: &Device) -> Candidate {
    let model = config.init(device);
    let summary = model.summary(SIZE, SIZE);
    let model = model.fuse();
    Candidate {
        name: name.into(),
        params: summary.total_params(),
        macs: summary.total_macs(),
        features: None,
        forward: Box::new(move |x| model.forward(x)),
    }
}

/// Per-stage batch-1 latency: stem, blocks grouped by the output stride they produce, and the
/// last convolution with the classifier. Each piece is timed on its real input.
fn stage_latencies(
    features: &Features,
    head: &dyn Fn(Tensor<4>) -> Tensor<2>,
    input: Tensor<4>,
    runs: usize,
) -> Vec<(String, f64)> {
    let sync4 = |x: Tensor<4>| drop(x.into_data());
    let mut stages = Vec::new();
    // On the thread pool, as inside `forward` (see `native::run_on_thread_pool`).
    let stem = |x: Tensor<4>| native::run_on_thread_pool(|| features.stem.forward(x));
    let stem_out = stem(input.clone());
    stages.push((
        "stem".to_string(),
        measure(runs, || sync4(stem(input.clone()))).median,
    ));
    let mut x = stem_out;
    let mut stride = 2;
    let mut start = 0;
    while start < features.blocks.len() {
        // A group runs to just before the next block that halves the resolution.
        let mut end = start + 1;
        while end < features.blocks.len() && features.blocks[end].depthwise.conv.stride[0] == 1 {
            end += 1;
        }
        let group = &features.blocks[start..end];
        stride *= group[0].depthwise.conv.stride[0];
        let run = |x: Tensor<4>| {
            native::run_on_thread_pool(|| group.iter().fold(x, |x, block| block.forward(x)))
        };
        let latency = measure(runs, || sync4(run(x.clone()))).median;
        stages.push((format!("blocks @ stride {stride}"), latency));
        x = run(x);
        start = end;
    }
    let latency = measure(runs, || {
        let last = native::run_on_thread_pool(|| features.last_conv.forward(x.clone()));
        drop(head(last).into_data())
    })
    .median;
    stages.push(("last conv + head".to_string(), latency));
    stages
}

/// Every stage name of `models`, in first-seen order (V3-Small has no stride-2 stage).
fn stage_names(models: &[(String, Vec<(String, f64)>)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, latencies) in models {
        for (stage, _) in latencies {
            if !names.contains(stage) {
                names.push(stage.clone());
            }
        }
    }
    names
}

/// A grouped bar chart of per-stage latency, one colour per model.
fn svg(models: &[(String, Vec<(String, f64)>)]) -> String {
    const COLOURS: [&str; 3] = ["#4477aa", "#ee6677", "#228833"];
    let stages = stage_names(models);
    let max = models
        .iter()
        .flat_map(|(_, latencies)| latencies.iter().map(|(_, ms)| *ms))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let (width, height, left, bottom, top) = (900.0, 420.0, 60.0, 90.0, 40.0);
    let group_width = (width - left - 20.0) / stages.len() as f64;
    let bar_width = group_width * 0.8 / models.len() as f64;
    let plot_height = height - bottom - top;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"{left}\" y=\"20\" font-size=\"14\">Batch-1 latency per stage (ms, median)</text>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        height - bottom,
        width - 20.0,
        height - bottom
    );
    for (s, stage) in stages.iter().enumerate() {
        let x0 = left + s as f64 * group_width;
        for (m, (_, latencies)) in models.iter().enumerate() {
            let Some((_, ms)) = latencies.iter().find(|(name, _)| name == stage) else {
                continue;
            };
            let bar = ms / max * plot_height;
            let x = x0 + group_width * 0.1 + m as f64 * bar_width;
            out += &format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"{}\">\
                 <title>{ms:.2} ms</title></rect>\n",
                height - bottom - bar,
                bar_width * 0.95,
                COLOURS[m % COLOURS.len()]
            );
        }
        out += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{stage}</text>\n",
            x0 + group_width / 2.0,
            height - bottom + 18.0
        );
    }
    for (m, (name, _)) in models.iter().enumerate() {
        let y = height - 40.0 + (m / 3) as f64 * 16.0;
        let x = left + (m % 3) as f64 * 200.0;
        out += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{y}\">{name}</text>\n",
            y - 10.0,
            COLOURS[m % COLOURS.len()],
            x + 16.0
        );
    }
    out += &format!(
        "<text x=\"10\" y=\"{:.1}\">{max:.1} ms</text>\n</svg>\n",
        top + 4.0
    );
    out
}

fn main() {
    let args = parse_args().unwrap_or_else(|error| {
        eprintln!(
            "error: {error}\nusage: v2_vs_v3 [--backend flex|ndarray|wgpu] [--runs N] [--svg PATH]"
        );
        std::process::exit(2);
    });
    let device = backend::device(&args.backend).unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1);
    });
    let runs = args.runs;
    let image = |batch| {
        Tensor::<4>::random(
            [batch, 3, SIZE, SIZE],
            Distribution::Normal(0.0, 1.0),
            &device,
        )
    };
    let (single, batch) = (image(1), image(THROUGHPUT_BATCH));

    let v2_model = MobileNetV2Config::new().init(&device);
    let v2_summary = v2_model.summary(SIZE, SIZE);
    let v2_model = v2_model.fuse();
    let v2_head = v2_model.clone();
    let v2 = Candidate {
        name: "V2 1.0".into(),
        params: v2_summary.total_params(),
        macs: v2_summary.total_macs(),
        features: Some((
            v2_model.features.clone(),
            Box::new(move |x| v2_head.forward_head(x)) as Forward,
        )),
        forward: Box::new(move |x| v2_model.forward(x)),
    };
    let mut relu = MobileNetV3Config::large()
        .with_stem_activation(Activation::ReLU)
        .with_head_activation(Activation::ReLU);
    relu.blocks
        .iter_mut()
        .for_each(|row| row.activation = Activation::ReLU);
    let mut no_se = MobileNetV3Config::large();
    no_se.blocks.iter_mut().for_each(|row| row.use_se = false);
    let candidates = [
        v2,
        v3("V3-Large 1.0", MobileNetV3Config::large(), &device, true),
        v3("V3-Small 1.0", MobileNetV3Config::small(), &device, true),
        v3("V3-Large, ReLU for h-swish", relu, &device, false),
        v3("V3-Large, no SE", no_se, &device, false),
        v3(
            "V3-Large, reduced tail",
            MobileNetV3Config::large().with_reduced_tail(true),
            &device,
            false,
        ),
        v4("V4 Conv-Small", MobileNetV4Config::conv_small(), &device),
        v4("V4 Conv-Medium", MobileNetV4Config::conv_medium(), &device),
    ];

    println!(
        "backend {}; {SIZE}x{SIZE}; random weights, batch norm fused; {runs} timed runs after {WARM_UP} warm-up\n",
        args.backend
    );
    println!(
        "| model | params | MACs (G) | batch 1 median ms (p10-p90) | batch {THROUGHPUT_BATCH} images/s |"
    );
    println!("|---|---:|---:|---|---:|");
    // Batch 1, interleaved: every round times each model in turn, so a burst of load from
    // elsewhere on the machine slows all of them alike and the ablations' differences survive it.
    eprintln!("batch 1: {INTERLEAVED_ROUNDS} interleaved rounds over all models ...");
    let forwards: Vec<&Forward> = candidates.iter().map(|c| &c.forward).collect();
    let single_stats = measure_interleaved(runs, &forwards, &single);
    let mut latencies = Vec::new();
    let mut stages = Vec::new();
    for (candidate, one) in candidates.iter().zip(single_stats) {
        eprintln!(
            "measuring {} at batch {THROUGHPUT_BATCH} ...",
            candidate.name
        );
        let forward = &candidate.forward;
        let eight = measure(runs.div_ceil(4), || {
            drop(forward(batch.clone()).into_data())
        });
        println!(
            "| {} | {} | {:.3} | {:.2} ({:.2}-{:.2}) | {:.0} |",
            candidate.name,
            candidate.params,
            candidate.macs as f64 / 1e9,
            one.median,
            one.p10,
            one.p90,
            THROUGHPUT_BATCH as f64 / (eight.median / 1e3)
        );
        latencies.push(one.median);
        if let Some((features, head)) = &candidate.features {
            eprintln!("  per stage ...");
            stages.push((
                candidate.name.clone(),
                stage_latencies(features, head, single.clone(), runs),
            ));
        }
    }

    let (large, relu, no_se) = (latencies[1], latencies[3], latencies[4]);
    println!("\nV3-Large batch-1 latency the ablations save (the cost of each feature here):");
    println!(
        "- h-swish instead of ReLU: {:.2} ms ({:.0}% of V3-Large)",
        large - relu,
        100.0 * (large - relu) / large
    );
    println!(
        "- squeeze-excitation: {:.2} ms ({:.0}% of V3-Large)",
        large - no_se,
        100.0 * (large - no_se) / large
    );
    println!(
        "- V3-Large vs V2: {:.2}x the latency for {:.2}x the multiply-adds",
        large / latencies[0],
        candidates[1].macs as f64 / candidates[0].macs as f64
    );
    println!(
        "- V4 Conv-Small (no SE, no h-swish) vs V3-Large: {:.2}x the latency for {:.2}x the \
         multiply-adds",
        latencies[6] / large,
        candidates[6].macs as f64 / candidates[1].macs as f64
    );

    println!("\nBatch-1 latency per stage (median ms):\n");
    let names: Vec<&String> = stages.iter().map(|(name, _)| name).collect();
    println!(
        "| stage | {} |",
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(names.len()));
    for stage in &stage_names(&stages) {
        let cells: Vec<String> = stages
            .iter()
            .map(|(_, latencies)| {
                latencies
                    .iter()
                    .find(|(name, _)| name == stage)
                    .map_or("-".to_string(), |(_, ms)| format!("{ms:.2}"))
            })
            .collect();
        println!("| {stage} | {} |", cells.join(" | "));
    }
    match std::fs::write(&args.svg, svg(&stages)) {
        Ok(()) => println!("\nper-stage chart written to {}", args.svg),
        Err(error) => eprintln!("error: cannot write {}: {error}", args.svg),
    }
}
