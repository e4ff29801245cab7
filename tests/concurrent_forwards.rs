//! One fused model shared by several threads, each running forwards at once: every output is
//! bit-identical to a forward run alone, the per-call kernel choice of one thread does not leak
//! into another's, and nothing hangs (each forward keeps a second worker of the pool spinning
//! for its length, `native::run_on_thread_pool`; concurrent forwards must still all finish).
#![cfg(feature = "flex")]

use std::sync::mpsc;
use std::time::Duration;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use mobilenet_burn::{MobileNetV3Config, native};

/// Threads sharing the model, and forwards each.
const THREADS: usize = 6;
const FORWARDS: usize = 4;

#[test]
fn concurrent_forwards_are_bit_identical_and_finish() {
    let device = Device::flex();
    let model = MobileNetV3Config::small()
        .with_width_mult(0.5)
        .init(&device)
        .fuse();
    let inputs: Vec<Tensor<4>> = (0..2)
        .map(|_| Tensor::random([2, 3, 96, 80], Distribution::Normal(0.0, 1.0), &device))
        .collect();
    let alone: Vec<TensorData> = inputs
        .iter()
        .map(|x| model.forward(x.clone()).into_data())
        .collect();
    let burn_alone = native::with_kernels(false, || model.forward(inputs[0].clone())).into_data();

    let (sender, receiver) = mpsc::channel();
    let worker = {
        let (model, inputs) = (model.clone(), inputs.clone());
        std::thread::spawn(move || {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|thread| {
                        let (model, inputs) = (&model, &inputs);
                        scope.spawn(move || {
                            // Every third thread asks for burn's operations, per call.
                            let kernels = thread % 3 != 2;
                            (0..FORWARDS)
                                .map(|step| {
                                    let index = (thread + step) % 2;
                                    let (y, counts) = native::count_layers(|| {
                                        native::with_kernels(kernels, || {
                                            model.forward(inputs[index].clone())
                                        })
                                    });
                                    (index, kernels, counts.inference, y.into_data())
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let results: Vec<_> = handles
                    .into_iter()
                    .flat_map(|handle| handle.join().expect("a forward panicked"))
                    .collect();
                sender.send(results).expect("send");
            });
        })
    };
    // A hang fails the test instead of stalling CI.
    let results = receiver
        .recv_timeout(Duration::from_secs(300))
        .expect("concurrent forwards did not finish in 300 s");
    worker.join().expect("worker");

    assert_eq!(results.len(), THREADS * FORWARDS);
    for (index, kernels, layers, output) in results {
        if kernels {
            assert!(layers > 0, "the kernels did not run where asked");
            assert_eq!(
                output, alone[index],
                "input {index}: differs from a forward alone"
            );
        } else {
            assert_eq!(
                layers, 0,
                "the kernels ran in a thread that turned them off"
            );
            if index == 0 {
                assert_eq!(
                    output, burn_alone,
                    "burn's path differs from a forward alone"
                );
            }
        }
    }
}
