//! SSD's default boxes, as torchvision's `DefaultBoxGenerator`
//! (`torchvision/models/detection/anchor_utils.py`): per feature map `k` of `m`, scale
//! `s_k = min + (max - min) k / (m - 1)` (and `s_m = 1`), boxes of aspect ratio 1 at `s_k` and at
//! `sqrt(s_k s_{k+1})`, then `s_k sqrt(r) x s_k / sqrt(r)` and its transpose for each ratio `r`;
//! centred on every cell, widths and heights clipped to [0, 1], in pixels of the input.

/// The default-box generator's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultBoxes {
    /// Aspect ratios per feature map (SSDLite: `[2, 3]` on each of six maps).
    pub aspect_ratios: Vec<Vec<f64>>,
    /// Smallest scale (SSDLite: 0.2).
    pub min_ratio: f64,
    /// Largest scale (SSDLite: 0.95).
    pub max_ratio: f64,
}

impl DefaultBoxes {
    /// SSDLite320's: aspect ratios 2 and 3 on `maps` feature maps, scales 0.2 to 0.95.
    pub fn ssdlite(maps: usize) -> Self {
        Self {
            aspect_ratios: vec![vec![2.0, 3.0]; maps],
            min_ratio: 0.2,
            max_ratio: 0.95,
        }
    }

    /// Boxes per cell of each feature map: 2 + 2 per aspect ratio.
    pub fn boxes_per_location(&self) -> Vec<usize> {
        self.aspect_ratios
            .iter()
            .map(|ratios| 2 + 2 * ratios.len())
            .collect()
    }

    fn scales(&self) -> Vec<f64> {
        let maps = self.aspect_ratios.len();
        if maps > 1 {
            let range = self.max_ratio - self.min_ratio;
            let mut scales: Vec<f64> = (0..maps)
                .map(|k| self.min_ratio + range * k as f64 / (maps as f64 - 1.0))
                .collect();
            scales.push(1.0);
            scales
        } else {
            vec![self.min_ratio, self.max_ratio]
        }
    }

    /// Width-height pairs (fractions of the image) of each map, as torchvision computes them in
    /// f64 and stores in f32.
    fn wh_pairs(&self) -> Vec<Vec<[f32; 2]>> {
        let scales = self.scales();
        self.aspect_ratios
            .iter()
            .enumerate()
            .map(|(k, ratios)| {
                let (s_k, s_prime) = (scales[k], (scales[k] * scales[k + 1]).sqrt());
                let mut pairs = vec![[s_k as f32, s_k as f32], [s_prime as f32, s_prime as f32]];
                for ratio in ratios {
                    let (w, h) = (s_k * ratio.sqrt(), s_k / ratio.sqrt());
                    pairs.push([w as f32, h as f32]);
                    pairs.push([h as f32, w as f32]);
                }
                pairs
            })
            .collect()
    }

    /// Every default box as `[x1, y1, x2, y2]` in pixels of an `image_size` (`[height, width]`)
    /// input, for feature maps of `grid_sizes` (`[height, width]` each): map by map, cell by
    /// cell (row-major), box by box — the order of the head's outputs.
    pub fn boxes(&self, grid_sizes: &[[usize; 2]], image_size: [usize; 2]) -> Vec<[f32; 4]> {
        let (image_h, image_w) = (image_size[0] as f32, image_size[1] as f32);
        let mut boxes = Vec::new();
        for (pairs, &[rows, columns]) in self.wh_pairs().iter().zip(grid_sizes) {
            for y in 0..rows {
                // torch: (arange + 0.5) / f_k, in f32, f_k the grid size
                let center_y = (y as f32 + 0.5) / rows as f32;
                for x in 0..columns {
                    let center_x = (x as f32 + 0.5) / columns as f32;
                    for &[w, h] in pairs {
                        let (w, h) = (w.clamp(0.0, 1.0), h.clamp(0.0, 1.0));
                        boxes.push([
                            (center_x - 0.5 * w) * image_w,
                            (center_y - 0.5 * h) * image_h,
                            (center_x + 0.5 * w) * image_w,
                            (center_y + 0.5 * h) * image_h,
                        ]);
                    }
                }
            }
        }
        boxes
    }
}
