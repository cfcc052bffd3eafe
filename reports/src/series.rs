//! Values over time or over load: what the reports chart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One line of a chart: `(x, y)` points, e.g. seconds since the run began against queue depth,
/// or offered requests per second against P99.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Series {
    /// What is plotted, e.g. `queue depth` or `outbox backlog`.
    pub name: String,
    /// Unit of `x`, e.g. `s` or `req/s`.
    pub x_unit: String,
    /// Unit of `y`, e.g. `messages` or `ms`.
    pub y_unit: String,
    pub points: Vec<[f64; 2]>,
}

impl Series {
    pub fn new(name: &str, x_unit: &str, y_unit: &str) -> Series {
        Series {
            name: name.to_string(),
            x_unit: x_unit.to_string(),
            y_unit: y_unit.to_string(),
            points: Vec::new(),
        }
    }

    pub fn push(&mut self, x: f64, y: f64) {
        self.points.push([x, y]);
    }

    /// The largest `y`, if any point was recorded.
    pub fn max_y(&self) -> Option<f64> {
        self.points.iter().map(|p| p[1]).reduce(f64::max)
    }
}
