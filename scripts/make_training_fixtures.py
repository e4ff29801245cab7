#!/usr/bin/env python3
"""Generates the PyTorch training references under tests/fixtures/training/.

For each case a torchvision MobileNet at reduced width (dropout 0) gets perturbed weights and
BatchNorm statistics (as scripts/make_fixtures.py does), and its state_dict is saved. Then, from
that checkpoint, in training mode on one seeded batch:

- `train_logits`, `loss` (cross entropy, mean) and `grad.<key>` for every parameter;
- `sgd.<key>`: every parameter and running statistic after one `SGD(lr=0.1)` step, and
  `eval_logits`: the eval-mode logits on a second input after that step;
- `momentum.<key>`: the same after 3 steps of `SGD(momentum=0.9, weight_decay=1e-4)`;
- `rmsprop.<key>`: the same after 3 steps of `RMSprop(alpha=0.9, eps=0.0316, momentum=0.9,
  weight_decay=1e-5)`, torchvision's MobileNetV3 recipe's optimizer (learning rates per case,
  see CASES).

Every reference is PyTorch's computation in float64, stored as float32: the exact answer that
float32 arithmetic (PyTorch's or burn's) approximates. Each case's seed is the first whose
results noise of 1e-6 relative (every weight and input times 1 + 1e-6 N(0, 1)) moves by at most
5e-5 (the first step's gradients, relative to each layer's gradient scale) and 1e-5 (the states
after the 3-step runs, relative to each tensor's scale). Otherwise a pre-activation within rounding
distance of a ReLU kink would make the comparison test the order of summation rather than the
implementation. `manifest.json` records each case's seed and both sensitivities.

The 3-step runs use three batches (`input`, `input_b`, `input_c` with `labels`, `labels_b`,
`labels_c`). Run from the repository root:

    python3 -m venv /tmp/fixtures-env
    /tmp/fixtures-env/bin/pip install torch==2.15.0 torchvision==0.29.2 safetensors==0.8.0
    /tmp/fixtures-env/bin/python scripts/make_training_fixtures.py

The committed fixtures were made with torch 2.15.0 and torchvision 0.29.2 (CPU).
"""

import json
import pathlib
import sys

import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_fixtures import perturb  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "training"

# name, builder, kwargs, input shape (batch, channels, height, width), checkpoint format,
# learning rates of the 3-step SGD-momentum and RMSprop runs, and whether activation inputs are
# kept away from their kinks (`away_from_kinks`). With the generic perturbation no seed of 100
# passes the rounding-sensitivity check for any of the three models: the activations' gradient
# masks are checked by the unit tests of src/layers/activation.rs instead. Inputs of 96 pixels keep 9 values
# per channel or more in the last BatchNorms: with fewer, a BatchNorm gradient is a small
# difference of large terms and float32 resolves it less well.
CASES = [
    ("v2_w025", "mobilenet_v2", dict(width_mult=0.25, num_classes=5), (4, 3, 96, 96), "pth", 0.01, 0.002, True),
    ("v3l_w025", "mobilenet_v3_large", dict(width_mult=0.25, num_classes=4), (3, 3, 96, 80), "safetensors", 0.01, 0.002, True),
    ("v3s_w025", "mobilenet_v3_small", dict(width_mult=0.25, num_classes=3), (4, 3, 96, 96), "pth", 0.01, 0.002, True),
]

SGD_LR = 0.1
MOMENTUM = dict(momentum=0.9, weight_decay=1e-4)
RMSPROP = dict(alpha=0.9, eps=0.0316, momentum=0.9, weight_decay=1e-5)
STEPS = 3
# How far noise of 1e-6 relative (see `rounding_sensitivity`; some 16 times float32's rounding
# unit) may move a case's first-step gradients, relative to each layer's gradient scale, and
# its states after the 3-step runs, relative to each tensor's scale.
CONDITIONING = 5e-5
STATE_CONDITIONING = 1e-5


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def build(builder, kwargs, checkpoint, dtype):
    model = getattr(torchvision.models, builder)(dropout=0.0, **kwargs)
    model.load_state_dict(checkpoint)
    return model.to(dtype)


def train_steps(builder, kwargs, checkpoint, batches, optimizer_class, options, dtype=torch.float64):
    model = build(builder, kwargs, checkpoint, dtype)
    model.train()
    optimizer = optimizer_class(model.parameters(), **options)
    for images, labels in batches:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images.to(dtype)), labels).backward()
        optimizer.step()
    return model


def gradients(builder, kwargs, checkpoint, images, labels, dtype):
    model = build(builder, kwargs, checkpoint, dtype)
    model.train()
    logits = model(images.to(dtype))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    return model, logits, loss


def layer_scales(grads):
    """The largest gradient of each layer (a key without its last segment)."""
    scales = {}
    for key, grad in grads.items():
        layer = key.rsplit(".", 1)[0]
        scales[layer] = max(scales.get(layer, 0.0), grad.abs().max().item())
    return scales


def jitter(tensors, generator):
    """Each value times (1 + 1e-6 * N(0, 1)): rounding-sized noise, as another float32 summation
    order would leave."""
    return {k: (v * (1 + 1e-6 * torch.randn(v.shape, generator=generator, dtype=torch.float64)).to(v.dtype))
            if v.is_floating_point() else v for k, v in tensors.items()}


def outcomes(builder, kwargs, checkpoint, inputs, labels, momentum, rmsprop):
    """In float64: the first step's gradients and the states after both 3-step runs."""
    model, _, _ = gradients(builder, kwargs, checkpoint, inputs[0], labels[0], torch.float64)
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    batches = list(zip(inputs, labels))
    states = [
        state(train_steps(builder, kwargs, checkpoint, batches, optimizer_class, options))
        for optimizer_class, options in ((torch.optim.SGD, momentum), (torch.optim.RMSprop, rmsprop))
    ]
    return grads, states


def rounding_sensitivity(builder, kwargs, checkpoint, inputs, labels, momentum, rmsprop, seed):
    """How far the results move when weights and inputs get rounding-sized noise: the first
    step's gradients relative to each layer's gradient scale, and the states after the 3-step
    runs relative to each tensor's scale (the worst of 3 draws). A ReLU network is piecewise: a
    pre-activation within rounding distance of a kink (0 or 6 for ReLU6, +-3 for h-swish) makes
    float32 results, PyTorch's or ours, depend on the order of summation."""
    grads, states = outcomes(builder, kwargs, checkpoint, inputs, labels, momentum, rmsprop)
    scales = layer_scales(grads)
    generator = torch.Generator().manual_seed(seed)
    gradient_error = state_error = 0.0
    for _ in range(3):
        noisy = jitter(checkpoint, generator)
        noisy_inputs = [x * (1 + 1e-6 * torch.randn(x.shape, generator=generator)) for x in inputs]
        noisy_grads, noisy_states = outcomes(builder, kwargs, noisy, noisy_inputs, labels, momentum, rmsprop)
        gradient_error = max(
            gradient_error,
            max((noisy_grads[k] - g).abs().max().item() / scales[k.rsplit(".", 1)[0]] for k, g in grads.items()),
        )
        for reference, noisy_state in zip(states, noisy_states):
            state_error = max(
                state_error,
                max(
                    (noisy_state[k].double() - v.double()).abs().max().item() / max(v.abs().max().item(), 1e-12)
                    for k, v in reference.items()
                ),
            )
    return gradient_error, state_error


def away_from_kinks(model, builder, generator):
    """Moves every activation's input away from its kinks (ReLU6: 0 and 6; ReLU: 0; h-swish and
    hard-sigmoid: -3 and 3). A network of these is piecewise smooth: an input within rounding
    distance of a kink lets rounding decide whether a gradient passes, and a small BatchNorm
    batch turns one such decision into percents of a gradient. With the generic perturbation
    thousands of inputs fall within 1e-6 of a kink, and noise of 1e-6 moves MobileNetV2's
    gradients by 10-60%.

    In training mode a BatchNorm output is `weight * x_hat + bias` with |x_hat| below ~5 here:
    V2's scales in [0.3, 0.6] and shifts in [2.5, 3.5] keep ReLU6 inputs inside (0, 6); V3's
    scales in [0.15, 0.3] and shifts in [1.4, 1.6] keep ReLU and h-swish inputs inside (0, 3).
    Squeeze-excitation's first layer gets a shift of 3 (its ReLU input stays positive) and its
    second and the classifier's hidden layer a tenth and a third of their weights (their
    hard-sigmoid and h-swish inputs stay inside (-3, 3))."""
    v2 = builder == "mobilenet_v2"
    scale, shift = ((0.3, 0.3), (2.5, 1.0)) if v2 else ((0.15, 0.15), (1.4, 0.2))

    def uniform(tensor, low, width):
        return torch.rand(tensor.shape, generator=generator) * width + low

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(uniform(module.weight, *scale))
                module.bias.copy_(uniform(module.bias, *shift))
            elif name.endswith(".fc1"):
                module.bias.add_(3.0)
            elif name.endswith(".fc2"):
                module.weight.mul_(0.1)
            elif name == "classifier.0" and not v2:
                module.weight.mul_(1 / 3)


def draw_case(builder, kwargs, shape, seed, kink_free):
    """A perturbed model and three batches from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    model = getattr(torchvision.models, builder)(dropout=0.0, **kwargs)
    perturb(model, generator)
    if kink_free:
        away_from_kinks(model, builder, generator)
    checkpoint = {k: v.clone() for k, v in model.state_dict().items()}
    classes = kwargs["num_classes"]
    inputs = [torch.randn(shape, generator=generator) for _ in range(STEPS)]
    labels = [torch.randint(0, classes, (shape[0],), generator=generator) for _ in range(STEPS)]
    eval_input = torch.randn((2,) + shape[1:], generator=generator)
    return checkpoint, inputs, labels, eval_input


def references(builder, kwargs, checkpoint, inputs, labels, eval_input, momentum, rmsprop, dtype):
    """Every reference of a case, computed in `dtype` (returned as float64)."""
    model, logits, loss = gradients(builder, kwargs, checkpoint, inputs[0], labels[0], dtype)
    out = {"train_logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for key, param in model.named_parameters():
        out[f"grad.{key}"] = param.grad.detach().clone()
    with torch.no_grad():
        for param in model.parameters():
            param -= SGD_LR * param.grad
    out.update({f"sgd.{key}": value for key, value in state(model).items()})
    model.eval()
    with torch.no_grad():
        out["eval_logits"] = model(eval_input.to(dtype))
    batches = list(zip(inputs, labels))
    for prefix, optimizer_class, options in (("momentum", torch.optim.SGD, momentum), ("rmsprop", torch.optim.RMSprop, rmsprop)):
        trained = train_steps(builder, kwargs, checkpoint, batches, optimizer_class, options, dtype)
        out.update({f"{prefix}.{key}": value for key, value in state(trained).items()})
    return {key: value.double() for key, value in out.items()}


def main() -> None:
    torch.set_num_threads(1)  # one summation order, whatever the machine
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": []}
    for index, (name, builder, kwargs, shape, fmt, momentum_lr, rmsprop_lr, kink_free) in enumerate(CASES):
        momentum = dict(MOMENTUM, lr=momentum_lr)
        rmsprop = dict(RMSPROP, lr=rmsprop_lr)
        # A deep ReLU network can be ill-conditioned for a given draw: a pre-activation within
        # rounding distance of a kink, or a gradient that is a small difference of large terms,
        # lets float32 rounding move gradients by percents. Such a draw tests the order of
        # summation, not the implementation: take the first seed that rounding-sized noise
        # moves by less than CONDITIONING.
        for seed in range(2000 + 100 * index, 2000 + 100 * index + 100):
            checkpoint, inputs, labels, eval_input = draw_case(builder, kwargs, shape, seed, kink_free)
            noise, state_noise = rounding_sensitivity(builder, kwargs, checkpoint, inputs, labels, momentum, rmsprop, seed)
            print(f"{name} seed {seed}: rounding sensitivity: gradients {noise:.2e}, states after 3 steps {state_noise:.2e}")
            if noise <= CONDITIONING and state_noise <= STATE_CONDITIONING:
                break
        else:
            raise SystemExit(f"{name}: no well-conditioned seed")

        if fmt == "safetensors":
            checkpoint_file = f"{name}.safetensors"
            save_file({k: v.contiguous() for k, v in checkpoint.items()}, OUT / checkpoint_file)
        else:
            checkpoint_file = f"{name}.pth"
            torch.save(checkpoint, OUT / checkpoint_file)

        # The references are computed in float64 (the exact answer to float32's rounding) and
        # stored as float32; PyTorch's own float32 results are measured against them.
        exact = references(builder, kwargs, checkpoint, inputs, labels, eval_input, momentum, rmsprop, torch.float64)
        float32 = references(builder, kwargs, checkpoint, inputs, labels, eval_input, momentum, rmsprop, torch.float32)
        record = {
            "input": inputs[0],
            "input_b": inputs[1],
            "input_c": inputs[2],
            "labels": labels[0],
            "labels_b": labels[1],
            "labels_c": labels[2],
            "eval_input": eval_input,
        }
        record.update({key: value.float() for key, value in exact.items()})
        torch_float32_error = {key: (float32[key] - value).abs().max().item() for key, value in exact.items()}
        save_file({k: v.contiguous() for k, v in record.items()}, OUT / f"{name}.train.safetensors")
        manifest["cases"].append(
            {
                "name": name,
                "model": builder,
                "width_mult": kwargs["width_mult"],
                "num_classes": kwargs["num_classes"],
                "checkpoint": checkpoint_file,
                "input_shape": list(shape),
                "seed": seed,
                "kink_free": kink_free,
                "rounding_sensitivity_gradients": noise,
                "rounding_sensitivity_states": state_noise,
                "sgd_lr": SGD_LR,
                "momentum": momentum,
                "rmsprop": rmsprop,
                "steps": STEPS,
                "torch_float32_error": torch_float32_error,
            }
        )
        worst = max(torch_float32_error.items(), key=lambda item: item[1])
        print(f"{name}: loss {exact['loss'].item():.4f}; PyTorch float32's largest error {worst[1]:.2e} ({worst[0]})")

    with open(OUT / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
