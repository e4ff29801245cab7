//! torchvision's batch mixing (`transforms.v2.MixUp`, `transforms.v2.CutMix`, and the reference
//! recipe's `RandomChoice` between them): each image is mixed with the previous one in the
//! batch (the batch rolled by one), and the labels become the same mixture of one-hot targets,
//! for [`soft_cross_entropy`](crate::training::soft_cross_entropy).

use burn::tensor::{Int, Tensor, TensorData};

use super::transforms::{CropBox, Draws};
use crate::Error;

/// One batch-mixing transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchMix {
    /// `MixUp(alpha)`: `x = λ x + (1 - λ) x_prev`, `λ ~ Beta(alpha, alpha)`.
    MixUp {
        /// The Beta distribution's parameter.
        alpha: f32,
    },
    /// `CutMix(alpha)`: a box of area about `(1 - λ)` of the image pasted from `x_prev`.
    CutMix {
        /// The Beta distribution's parameter.
        alpha: f32,
    },
}

/// What one application of a [`BatchMix`] drew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixParams {
    /// The weight of each image's own label (for CutMix, `1 - box area / image area`).
    pub lam: f64,
    /// CutMix's box, taken from the previous image; `None` for MixUp.
    pub region: Option<CropBox>,
}

impl BatchMix {
    /// The parameters for images of `height x width`, drawn as torchvision draws them: the
    /// Beta sample, then (CutMix) `randint(width)` and `randint(height)` for the box centre.
    pub fn params(&self, height: usize, width: usize, draws: &mut impl Draws) -> MixParams {
        match *self {
            Self::MixUp { alpha } => MixParams {
                lam: f64::from(draws.beta(alpha)),
                region: None,
            },
            Self::CutMix { alpha } => {
                let lam = f64::from(draws.beta(alpha));
                let (w, h) = (width as i64, height as i64);
                let r_x = draws.randint(0, w.max(1));
                let r_y = draws.randint(0, h.max(1));
                let r = 0.5 * (1.0 - lam).sqrt();
                let (r_w_half, r_h_half) = ((r * w as f64) as i64, (r * h as f64) as i64);
                let x1 = (r_x - r_w_half).max(0);
                let y1 = (r_y - r_h_half).max(0);
                let x2 = (r_x + r_w_half).min(w);
                let y2 = (r_y + r_h_half).min(h);
                let area = ((x2 - x1) * (y2 - y1)) as f64;
                MixParams {
                    lam: 1.0 - area / (w * h).max(1) as f64,
                    region: Some(CropBox {
                        top: y1 as u32,
                        left: x1 as u32,
                        height: (y2 - y1) as u32,
                        width: (x2 - x1) as u32,
                    }),
                }
            }
        }
    }

    /// Mixes a batch in place (`images`: `[n, channels, height, width]`, row-major) and returns
    /// the mixed one-hot targets (`[n, classes]`, row-major).
    ///
    /// # Panics
    ///
    /// If `images` and `shape` disagree, `labels` does not have `n` entries, or a label is not
    /// below `classes`; the tensor-level [`MixUpCutMix::apply`] returns errors instead.
    pub fn apply_to_slices(
        &self,
        images: &mut [f32],
        [n, channels, height, width]: [usize; 4],
        labels: &[usize],
        classes: usize,
        draws: &mut impl Draws,
    ) -> Vec<f32> {
        assert_eq!(
            images.len(),
            n * channels * height * width,
            "images and shape differ"
        );
        assert_eq!(labels.len(), n, "one label per image");
        let params = self.params(height, width, draws);
        let image_len = channels * height * width;
        let original = images.to_vec();
        let previous = |i: usize| &original[((i + n - 1) % n) * image_len..][..image_len];
        match params.region {
            None => {
                // `x.roll(1, 0).mul_(1 - lam).add_(x.mul(lam))`, the scalars in float32.
                let (keep, take) = (params.lam as f32, (1.0 - params.lam) as f32);
                for i in 0..n {
                    let prev = previous(i);
                    let own = &mut images[i * image_len..][..image_len];
                    for (value, &other) in own.iter_mut().zip(prev) {
                        *value = other * take + *value * keep;
                    }
                }
            }
            Some(region) => {
                for i in 0..n {
                    let prev = previous(i);
                    let own = &mut images[i * image_len..][..image_len];
                    for channel in 0..channels {
                        for row in region.top as usize..(region.top + region.height) as usize {
                            let start = (channel * height + row) * width + region.left as usize;
                            let span = start..start + region.width as usize;
                            own[span.clone()].copy_from_slice(&prev[span]);
                        }
                    }
                }
            }
        }
        // `one_hot(y).roll(1, 0).mul_(1 - lam).add_(one_hot(y).mul(lam))`.
        let (keep, take) = (params.lam as f32, (1.0 - params.lam) as f32);
        let mut targets = vec![0f32; n * classes];
        for i in 0..n {
            let row = &mut targets[i * classes..][..classes];
            assert!(
                labels[i] < classes,
                "label {} of {classes} classes",
                labels[i]
            );
            row[labels[(i + n - 1) % n]] += take;
            row[labels[i]] += keep;
        }
        targets
    }
}

/// The reference recipe's `--mixup-alpha` / `--cutmix-alpha`: `RandomChoice` over the mixes
/// whose alpha is positive, applied to each training batch.
#[derive(Debug, Clone, PartialEq)]
pub struct MixUpCutMix {
    /// The mixes chosen among, with equal probability.
    pub choices: Vec<BatchMix>,
}

impl MixUpCutMix {
    /// The recipe's `get_mixup_cutmix(mixup_alpha, cutmix_alpha)`: `None` when both are 0.
    pub fn new(mixup_alpha: f32, cutmix_alpha: f32) -> Option<Self> {
        let mut choices = Vec::new();
        if mixup_alpha > 0.0 {
            choices.push(BatchMix::MixUp { alpha: mixup_alpha });
        }
        if cutmix_alpha > 0.0 {
            choices.push(BatchMix::CutMix {
                alpha: cutmix_alpha,
            });
        }
        (!choices.is_empty()).then_some(Self { choices })
    }

    /// The mix to apply to the next batch: one [`Draws::choice`], as `RandomChoice` draws
    /// even between one transform.
    pub fn choose(&self, draws: &mut impl Draws) -> BatchMix {
        self.choices[draws.choice(self.choices.len())]
    }

    /// Mixes a batch of images `[n, channels, height, width]` with integer labels `[n]`: the
    /// mixed images and their soft targets `[n, classes]`, on the images' device.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (with the images' shape) if the batch sizes differ or a label is not below `classes`.
    pub fn apply(
        &self,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        classes: usize,
        draws: &mut impl Draws,
    ) -> Result<(Tensor<4>, Tensor<2>), Error> {
        let device = images.device();
        let shape = images.dims();
        let invalid = |expected: String| Error::InvalidInput {
            shape: shape.to_vec(),
            expected,
        };
        let labels: Vec<usize> = labels
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|error| invalid(format!("integer labels ({error:?})")))?
            .into_iter()
            .map(|label| usize::try_from(label).unwrap_or(usize::MAX))
            .collect();
        if labels.len() != shape[0] {
            return Err(invalid(format!(
                "one label per image ({} labels given)",
                labels.len()
            )));
        }
        if let Some(&label) = labels.iter().find(|&&label| label >= classes) {
            return Err(invalid(format!(
                "labels below the number of classes, {classes} (found {label})"
            )));
        }
        let mut values = images
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|error| invalid(format!("float images ({error:?})")))?;
        let mix = self.choose(draws);
        let targets = mix.apply_to_slices(&mut values, shape, &labels, classes, draws);
        Ok((
            Tensor::from_data(TensorData::new(values, shape), &device),
            Tensor::from_data(TensorData::new(targets, [shape[0], classes]), &device),
        ))
    }
}
