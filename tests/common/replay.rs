//! Replays random draws recorded from torch (`scripts/make_transform_fixtures.py`,
//! `scripts/make_augment_fixtures.py`): each call a transform makes must be the one torchvision
//! made (kind and arguments, in order), and gets torch's value.

use std::collections::VecDeque;

use mobilenet_burn::data::Draws;
use serde_json::Value;

/// Torch's recorded draws, handed out in order.
pub struct Replay {
    draws: VecDeque<Value>,
}

impl Replay {
    /// The draws of a fixture case (its `draws` array).
    pub fn new(case: &Value) -> Self {
        Self {
            draws: case["draws"].as_array().unwrap().iter().cloned().collect(),
        }
    }

    fn next(&mut self, kind: &str) -> Value {
        let draw = self
            .draws
            .pop_front()
            .unwrap_or_else(|| panic!("a `{kind}` draw that torchvision did not make"));
        assert_eq!(draw["kind"], kind, "draw kind");
        draw
    }

    /// Whether every recorded draw was made.
    pub fn finished(&self) -> bool {
        self.draws.is_empty()
    }
}

fn float(draw: &Value, key: &str) -> f32 {
    draw[key].as_f64().unwrap() as f32
}

impl Draws for Replay {
    fn uniform(&mut self, low: f32, high: f32) -> f32 {
        let draw = self.next("uniform");
        assert_eq!(low, float(&draw, "low"), "uniform's low");
        assert_eq!(high, float(&draw, "high"), "uniform's high");
        float(&draw, "value")
    }

    fn randint(&mut self, low: i64, high: i64) -> i64 {
        let draw = self.next("randint");
        let recorded = (
            draw["low"].as_i64().unwrap(),
            draw["high"].as_i64().unwrap(),
        );
        assert_eq!((low, high), recorded, "randint's range");
        draw["value"].as_i64().unwrap()
    }

    fn rand(&mut self) -> f32 {
        float(&self.next("rand"), "value")
    }

    fn choice(&mut self, n: usize) -> usize {
        let draw = self.next("choice");
        assert_eq!(n as u64, draw["n"].as_u64().unwrap(), "choice's count");
        draw["value"].as_u64().unwrap() as usize
    }

    fn beta(&mut self, alpha: f32) -> f32 {
        let draw = self.next("beta");
        assert_eq!(alpha, float(&draw, "alpha"), "beta's alpha");
        float(&draw, "value")
    }
}
