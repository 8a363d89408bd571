//! Latency samples and their percentiles (nearest-rank, over every sample kept).

use std::time::Duration;

/// A sorted set of latency samples.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted_nanos: Vec<u64>,
}

impl Latencies {
    pub fn from_nanos(mut nanos: Vec<u64>) -> Self {
        nanos.sort_unstable();
        Self {
            sorted_nanos: nanos,
        }
    }

    pub fn from_durations(durations: &[Duration]) -> Self {
        Self::from_nanos(durations.iter().map(|d| d.as_nanos() as u64).collect())
    }

    /// Both sets of samples as one.
    pub fn merge(self, other: Latencies) -> Latencies {
        let mut nanos = self.sorted_nanos;
        nanos.extend_from_slice(&other.sorted_nanos);
        Latencies::from_nanos(nanos)
    }

    pub fn len(&self) -> usize {
        self.sorted_nanos.len()
    }

    /// The `p`th percentile (0–100) by nearest rank, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let n = self.sorted_nanos.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        self.sorted_nanos[index] as f64 / 1e6
    }

    pub fn min_ms(&self) -> f64 {
        self.sorted_nanos
            .first()
            .map_or(f64::NAN, |&v| v as f64 / 1e6)
    }

    pub fn max_ms(&self) -> f64 {
        self.sorted_nanos
            .last()
            .map_or(f64::NAN, |&v| v as f64 / 1e6)
    }

    pub fn mean_ms(&self) -> f64 {
        if self.sorted_nanos.is_empty() {
            return f64::NAN;
        }
        let sum: u128 = self.sorted_nanos.iter().map(|&v| u128::from(v)).sum();
        sum as f64 / self.sorted_nanos.len() as f64 / 1e6
    }

    /// min/p50/p90/p99/max/mean as a JSON object, in milliseconds.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.len(),
            "min_ms": round3(self.min_ms()),
            "p50_ms": round3(self.percentile_ms(50.0)),
            "p90_ms": round3(self.percentile_ms(90.0)),
            "p99_ms": round3(self.percentile_ms(99.0)),
            "max_ms": round3(self.max_ms()),
            "mean_ms": round3(self.mean_ms()),
        })
    }
}

/// Rounds to 3 decimals for the JSON summary (NaN becomes null there).
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latencies::from_nanos((1..=100).rev().map(|ms| ms * 1_000_000).collect());
        assert_eq!(l.percentile_ms(50.0), 50.0);
        assert_eq!(l.percentile_ms(99.0), 99.0);
        assert_eq!(l.percentile_ms(100.0), 100.0);
        assert_eq!(l.min_ms(), 1.0);
        assert_eq!(l.max_ms(), 100.0);
    }

    #[test]
    fn merged_samples_pool() {
        let a = Latencies::from_nanos(vec![3_000_000, 1_000_000]);
        let b = Latencies::from_nanos(vec![2_000_000]);
        let both = a.merge(b);
        assert_eq!(both.len(), 3);
        assert_eq!(both.percentile_ms(50.0), 2.0);
        assert_eq!(both.max_ms(), 3.0);
    }

    #[test]
    fn empty_is_nan() {
        assert!(Latencies::default().percentile_ms(50.0).is_nan());
    }
}
