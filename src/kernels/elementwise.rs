//! Activations applied in place, and squeeze-and-excitation on one image: the small passes that
//! burn runs as separate tensor operations (each with its own output buffer), done here on the
//! buffer the preceding convolution just wrote.

use super::simd::MulAdd;
use crate::Activation;

/// Applies `activation` to every element, in place, with PyTorch's formulas.
#[inline(always)]
pub(crate) fn activate_slice<M: MulAdd>(values: &mut [f32], activation: Activation) {
    match activation {
        Activation::ReLU => values.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::ReLU6 => values.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        // torch: x * relu6(x + 3) / 6
        Activation::HardSwish => values
            .iter_mut()
            .for_each(|x| *x = *x * (*x + 3.0).clamp(0.0, 6.0) / 6.0),
        Activation::Identity => {}
    }
}

/// The weights of one squeeze-and-excitation layer, as plain slices.
pub(crate) struct SqueezeExcitationWeights<'a> {
    /// `[squeeze, channels]`
    pub fc1_weight: &'a [f32],
    /// `[squeeze]`
    pub fc1_bias: &'a [f32],
    /// `[channels, squeeze]`
    pub fc2_weight: &'a [f32],
    /// `[channels]`
    pub fc2_bias: &'a [f32],
    /// The gate's hard-sigmoid, `clamp(slope * x + offset, 0, 1)`.
    pub slope: f32,
    /// See `slope`.
    pub offset: f32,
}

/// Squeeze-and-excitation on one image `[channels, pixels]`, in place: average each channel,
/// `fc1` + ReLU, `fc2` + hard-sigmoid, scale each channel.
pub(crate) fn squeeze_excitation(
    image: &mut [f32],
    channels: usize,
    weights: &SqueezeExcitationWeights,
) {
    let pixels = image.len() / channels;
    let squeeze = weights.fc1_bias.len();
    let mut means = vec![0.0f32; channels];
    for (mean, plane) in means.iter_mut().zip(image.chunks_exact(pixels)) {
        *mean = plane.iter().sum::<f32>() / pixels as f32;
    }
    let hidden: Vec<f32> = (0..squeeze)
        .map(|row| {
            let weight_row = &weights.fc1_weight[row * channels..(row + 1) * channels];
            let dot: f32 = weight_row.iter().zip(&means).map(|(w, m)| w * m).sum();
            (dot + weights.fc1_bias[row]).max(0.0)
        })
        .collect();
    image
        .chunks_exact_mut(pixels)
        .enumerate()
        .for_each(|(channel, plane)| {
            let weight_row = &weights.fc2_weight[channel * squeeze..(channel + 1) * squeeze];
            let dot: f32 = weight_row.iter().zip(&hidden).map(|(w, h)| w * h).sum();
            let gate = dot + weights.fc2_bias[channel];
            let scale = (gate * weights.slope + weights.offset).clamp(0.0, 1.0);
            plane.iter_mut().for_each(|x| *x *= scale);
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::Plain;

    #[test]
    fn activations_match_their_definitions() {
        let inputs = [-7.0f32, -3.0, -1.5, 0.0, 0.5, 2.9, 3.0, 6.0, 8.0];
        let relu6 = |x: f32| x.clamp(0.0, 6.0);
        for (activation, expected) in [
            (Activation::ReLU, inputs.map(|x| x.max(0.0))),
            (Activation::ReLU6, inputs.map(relu6)),
            (
                Activation::HardSwish,
                inputs.map(|x| x * relu6(x + 3.0) / 6.0),
            ),
            (Activation::Identity, inputs),
        ] {
            let mut values = inputs;
            activate_slice::<Plain>(&mut values, activation);
            assert_eq!(values, expected, "{activation:?}");
        }
    }

    #[test]
    fn squeeze_excitation_scales_each_channel_by_its_gate() {
        // Two channels of two pixels; one squeeze unit that sums the channel means.
        let mut image = [1.0f32, 3.0, -2.0, -4.0];
        let weights = SqueezeExcitationWeights {
            fc1_weight: &[1.0, 1.0],
            fc1_bias: &[4.0],
            fc2_weight: &[0.5, -1.0],
            fc2_bias: &[0.0, 0.0],
            slope: 1.0 / 6.0,
            offset: 0.5,
        };
        // means 2, -3 -> hidden relu(2 - 3 + 4) = 3 -> gates hsig(1.5) = 0.75, hsig(-3) = 0.
        squeeze_excitation(&mut image, 2, &weights);
        assert_eq!(image, [0.75, 2.25, 0.0, 0.0]);
    }
}
