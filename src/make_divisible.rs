//! Channel rounding shared by every MobileNet: torchvision's `_make_divisible`, itself from the
//! TensorFlow reference implementation.

/// The divisor every MobileNet rounds channel counts to.
pub const CHANNEL_DIVISOR: usize = 8;

/// Rounds `value` to the nearest multiple of `divisor` (at least `divisor`), rounding up one more
/// step when rounding to nearest would lose more than 10% of `value`.
///
/// Equal to torchvision's `_make_divisible(value, divisor)`, including its use of `f64`
/// arithmetic, so `make_divisible(16.0 * 0.75, 8)` is `16` and `make_divisible(1280.0 * 1.3, 8)`
/// is `1664`.
///
/// # Panics
///
/// Panics if `divisor` is zero.
pub fn make_divisible(value: f64, divisor: usize) -> usize {
    assert!(divisor > 0, "make_divisible: divisor must be positive");
    let divisor_f = divisor as f64;
    // Python's `int(v + d / 2) // d * d`: truncation toward zero, then floor division.
    let rounded = ((value + divisor_f / 2.0).trunc().max(0.0) as usize) / divisor * divisor;
    let mut new_value = rounded.max(divisor);
    // Never round down by more than 10%.
    if (new_value as f64) < 0.9 * value {
        new_value += divisor;
    }
    new_value
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by torchvision 0.29.2's `torchvision.models._utils._make_divisible`.

    #[test]
    fn rounds_to_nearest_multiple() {
        assert_eq!(make_divisible(16.0, 8), 16);
        assert_eq!(make_divisible(17.0, 8), 16);
        assert_eq!(make_divisible(20.0, 8), 24);
        assert_eq!(make_divisible(16.0 * 0.75, 8), 16);
        assert_eq!(make_divisible(1280.0 * 1.3, 8), 1664);
    }

    #[test]
    fn never_below_divisor() {
        assert_eq!(make_divisible(1.0, 8), 8);
        assert_eq!(make_divisible(0.0, 8), 8);
    }

    #[test]
    fn guards_against_losing_more_than_ten_percent() {
        // 11 rounds to 8, which is 27% below 11: bumped to 16.
        assert_eq!(make_divisible(11.0, 8), 16);
        // 19.9 rounds to 16, 20% below: bumped to 24.
        assert_eq!(make_divisible(19.9, 8), 24);
        // 92 rounds to 96; 91 rounds to 88 (3% below): kept.
        assert_eq!(make_divisible(91.0, 8), 88);
    }
}
