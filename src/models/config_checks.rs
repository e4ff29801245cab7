//! Checks shared by the model configs, each naming the field and the valid range.

use crate::Error;

pub(crate) fn invalid(field: &'static str, value: impl ToString, expected: impl ToString) -> Error {
    Error::InvalidConfig {
        field,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

pub(crate) fn check_width_mult(width_mult: f64) -> Result<(), Error> {
    if width_mult.is_finite() && width_mult > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            "width_mult",
            width_mult,
            "it must be positive and finite",
        ))
    }
}

pub(crate) fn check_num_classes(num_classes: usize) -> Result<(), Error> {
    if num_classes > 0 {
        Ok(())
    } else {
        Err(invalid("num_classes", num_classes, "it must be at least 1"))
    }
}

pub(crate) fn check_dropout(dropout: f64) -> Result<(), Error> {
    if (0.0..1.0).contains(&dropout) {
        Ok(())
    } else {
        Err(invalid("dropout", dropout, "it must be in [0, 1)"))
    }
}
