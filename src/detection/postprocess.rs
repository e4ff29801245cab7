//! From the head's outputs to detections, as torchvision's `SSD.postprocess_detections` and
//! `GeneralizedRCNNTransform.postprocess` (`torchvision/models/detection/ssd.py`,
//! `_utils.py`, `transform.py`, `ops/boxes.py`): decode the regressions against the default
//! boxes (weights 10, 10, 5, 5), clip to the image, softmax, per class keep scores above the
//! threshold and the top candidates, non-maximum suppression per class, keep the best, scale
//! back to the input image. On the host, so it works the same on every backend.

/// The detections of one image, best first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detections {
    /// `[x1, y1, x2, y2]` in pixels of the image as given.
    pub boxes: Vec<[f32; 4]>,
    /// Softmax probability of the label.
    pub scores: Vec<f32>,
    /// Class index (0 is the background and never appears).
    pub labels: Vec<usize>,
}

impl Detections {
    /// How many detections.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The detections one by one, best first.
    ///
    /// ```
    /// use mobilenet_burn::detection::{Detection, Detections};
    ///
    /// let found = Detections {
    ///     boxes: vec![[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]],
    ///     scores: vec![0.9, 0.2],
    ///     labels: vec![17, 3],
    /// };
    /// let confident: Vec<Detection> = found.iter().filter(|d| d.score > 0.5).collect();
    /// assert_eq!(confident.len(), 1);
    /// assert_eq!((confident[0].label, confident[0].bbox), (17, [1.0, 2.0, 30.0, 40.0]));
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Detection> + '_ {
        self.boxes
            .iter()
            .zip(&self.scores)
            .zip(&self.labels)
            .map(|((&bbox, &score), &label)| Detection { bbox, score, label })
    }

    /// The detections whose score is at least `min_score`.
    pub fn above(&self, min_score: f32) -> Detections {
        let mut kept = Detections::default();
        for detection in self.iter().filter(|d| d.score >= min_score) {
            kept.boxes.push(detection.bbox);
            kept.scores.push(detection.score);
            kept.labels.push(detection.label);
        }
        kept
    }
}

impl<'a> IntoIterator for &'a Detections {
    type Item = Detection;
    type IntoIter = Box<dyn ExactSizeIterator<Item = Detection> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// One detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in pixels of the image as given.
    pub bbox: [f32; 4],
    /// Softmax probability of the label.
    pub score: f32,
    /// Class index (0 is the background; see `pretrained::COCO_CATEGORIES` for names).
    pub label: usize,
}

/// Thresholds of the post-processing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostprocessOptions {
    /// Minimum class probability (torchvision SSDLite: 0.001). Compared in f32, as torch
    /// compares a float tensor with a Python number.
    pub score_threshold: f64,
    /// IoU above which the lower-scoring box of a class is suppressed (0.55). Compared in f64,
    /// as torchvision's kernel compares its f32 overlap with a `double` threshold.
    pub nms_threshold: f64,
    /// Detections kept per image (300).
    pub detections_per_image: usize,
    /// Candidates kept per class before suppression (300).
    pub topk_candidates: usize,
}

/// torchvision's `BoxCoder.bbox_xform_clip`: `log(1000 / 16)`.
const BBOX_XFORM_CLIP: f32 = 4.135_166_5;
/// torchvision's SSD box coder weights `(wx, wy, ww, wh)`.
const BOX_CODER_WEIGHTS: [f32; 4] = [10.0, 10.0, 5.0, 5.0];

/// `BoxCoder.decode_single`: regression `[dx, dy, dw, dh]` against `anchor` (xyxy).
fn decode(regression: [f32; 4], anchor: [f32; 4]) -> [f32; 4] {
    let width = anchor[2] - anchor[0];
    let height = anchor[3] - anchor[1];
    let center_x = anchor[0] + 0.5 * width;
    let center_y = anchor[1] + 0.5 * height;
    let [wx, wy, ww, wh] = BOX_CODER_WEIGHTS;
    let dx = regression[0] / wx;
    let dy = regression[1] / wy;
    let dw = (regression[2] / ww).min(BBOX_XFORM_CLIP);
    let dh = (regression[3] / wh).min(BBOX_XFORM_CLIP);
    let pred_center_x = dx * width + center_x;
    let pred_center_y = dy * height + center_y;
    let pred_w = dw.exp() * width;
    let pred_h = dh.exp() * height;
    let (half_w, half_h) = (0.5 * pred_w, 0.5 * pred_h);
    [
        pred_center_x - half_w,
        pred_center_y - half_h,
        pred_center_x + half_w,
        pred_center_y + half_h,
    ]
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// torchvision's `nms`: indices of `boxes` kept, by decreasing score.
fn nms(boxes: &[[f32; 4]], scores: &[f32], threshold: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (position, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let area_i = area(&boxes[i]);
        for &j in &order[position + 1..] {
            if suppressed[j] {
                continue;
            }
            let (a, b) = (&boxes[i], &boxes[j]);
            let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let inter = w * h;
            if f64::from(inter / (area_i + area(b) - inter)) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// Detections of one image from its class logits (`[anchors, classes]`, row-major), box
/// regressions (`[anchors, 4]`) and default boxes, for a network input of `input_size` and an
/// original image of `image_size` (both `[height, width]`).
pub(crate) fn postprocess(
    logits: &[f32],
    regressions: &[f32],
    anchors: &[[f32; 4]],
    num_classes: usize,
    input_size: [usize; 2],
    image_size: [usize; 2],
    options: &PostprocessOptions,
) -> Detections {
    let (input_h, input_w) = (input_size[0] as f32, input_size[1] as f32);
    let boxes: Vec<[f32; 4]> = anchors
        .iter()
        .zip(regressions.chunks_exact(4))
        .map(|(anchor, r)| {
            let b = decode([r[0], r[1], r[2], r[3]], *anchor);
            [
                b[0].clamp(0.0, input_w),
                b[1].clamp(0.0, input_h),
                b[2].clamp(0.0, input_w),
                b[3].clamp(0.0, input_h),
            ]
        })
        .collect();
    let probabilities: Vec<f32> = logits
        .chunks_exact(num_classes)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.into_iter().map(move |e| e / sum)
        })
        .collect();
    // Per class: candidates above the threshold, the best `topk_candidates`, then NMS.
    let mut kept: Vec<(f32, usize, [f32; 4])> = Vec::new();
    for label in 1..num_classes {
        let mut candidates: Vec<(f32, usize)> = (0..anchors.len())
            .map(|anchor| (probabilities[anchor * num_classes + label], anchor))
            .filter(|&(score, _)| score > options.score_threshold as f32)
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        candidates.truncate(options.topk_candidates);
        let class_boxes: Vec<[f32; 4]> = candidates.iter().map(|&(_, a)| boxes[a]).collect();
        let class_scores: Vec<f32> = candidates.iter().map(|&(s, _)| s).collect();
        for index in nms(&class_boxes, &class_scores, options.nms_threshold) {
            kept.push((class_scores[index], label, class_boxes[index]));
        }
    }
    kept.sort_by(|a, b| b.0.total_cmp(&a.0));
    kept.truncate(options.detections_per_image);
    // Back to the image's pixels (torchvision's `resize_boxes`).
    let ratio_h = image_size[0] as f32 / input_h;
    let ratio_w = image_size[1] as f32 / input_w;
    let mut detections = Detections::default();
    for (score, label, b) in kept {
        detections.boxes.push([
            b[0] * ratio_w,
            b[1] * ratio_h,
            b[2] * ratio_w,
            b[3] * ratio_h,
        ]);
        detections.scores.push(score);
        detections.labels.push(label);
    }
    detections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_every_separate_one() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0], // IoU with the first 81/119 = 0.68
            [20.0, 20.0, 30.0, 30.0],
            [0.0, 0.0, 10.0, 20.0], // IoU with the first 0.5: kept at 0.55
        ];
        let scores = [0.8, 0.9, 0.3, 0.5];
        assert_eq!(nms(&boxes, &scores, 0.55), vec![1, 3, 2]);
    }

    #[test]
    fn zero_regression_decodes_to_the_anchor() {
        let anchor = [10.0, 20.0, 50.0, 40.0];
        assert_eq!(decode([0.0; 4], anchor), anchor);
        // dw = 5 * ln 2 doubles the width around the same centre.
        let wider = decode([0.0, 0.0, 5.0 * 2f32.ln(), 0.0], anchor);
        assert!((wider[0] - -10.0).abs() < 1e-4 && (wider[2] - 70.0).abs() < 1e-4);
    }
}
