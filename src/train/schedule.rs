//! Learning rate as a function of the step: linear warm-up, then constant, step decay or
//! cosine decay to zero.

use crate::config::{Schedule, TrainConfig};

/// The learning rate of update `step` (0-based) out of `total`.
pub(crate) fn learning_rate(cfg: &TrainConfig, step: u64, total: u64) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    match cfg.schedule {
        Schedule::Constant => cfg.lr,
        Schedule::Step => {
            let passed = cfg.milestones.iter().filter(|&&m| step as f64 >= m * total as f64).count();
            cfg.lr * cfg.gamma.powi(passed as i32)
        }
        Schedule::Cosine => {
            let span = total.saturating_sub(cfg.warmup_steps).max(1) as f64;
            let t = (step - cfg.warmup_steps) as f64 / span;
            cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_schedules() {
        let mut c = TrainConfig { lr: 1.0, warmup_steps: 10, ..Default::default() };
        assert!((learning_rate(&c, 0, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 9, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(&c, 99, 100) < 0.01);
        c.schedule = Schedule::Step;
        c.warmup_steps = 0;
        assert_eq!(learning_rate(&c, 49, 100), 1.0);
        assert!((learning_rate(&c, 50, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 80, 100) - 0.01).abs() < 1e-12);
        c.schedule = Schedule::Constant;
        assert_eq!(learning_rate(&c, 99, 100), 1.0);
    }
}
