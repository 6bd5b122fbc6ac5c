//! Freeze training: layers frozen bottom-up on a schedule (`[freeze]` in the config).
//!
//! A [`Plan`] gives each layer of the network the step from which it is frozen (or
//! none). The frozen layers always form a prefix of the network: the trainer runs that
//! prefix without autograd (`Network::forward_frozen`), so the backward pass stops at the
//! first trainable layer, and the optimiser skips the prefix's parameters. A `linear` or
//! `explicit` plan is a pure function of the config and the number of steps, so a resumed
//! run freezes exactly as an uninterrupted one. An `adaptive` plan starts empty and is
//! filled in during training by [`super::adaptive`]; a resumed run reads the decisions
//! taken so far back from `freeze.csv` ([`Plan::restore`]). `freeze.csv` in the run
//! folder lists the layers frozen so far.

use crate::config::{FreezeConfig, FreezeSchedule};
use crate::error::InputError;
use std::ops::Range;
use std::path::Path;

pub const FILE: &str = "freeze.csv";
pub const HEADER: &str = "layer,index,step,fraction";

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Layer names, input to output, and the step from which each is frozen.
    pub layers: Vec<(String, Option<u64>)>,
    pub total: u64,
    pub bn_eval: bool,
    /// Decided during training (`adaptive`): the steps are filled in as layers freeze.
    pub adaptive: bool,
}

impl Plan {
    /// The plan of `config` for a network with layers `names` (`has_params[i]`: layer i
    /// has trainable parameters; `units`: its freeze units, `Network::freeze_units`)
    /// trained for `total` steps.
    pub fn new(config: &FreezeConfig, names: &[&str], has_params: &[bool], units: &[Range<usize>], total: u64) -> Result<Plan, InputError> {
        let n = names.len();
        let at = |f: f64| (f * total as f64).round() as u64;
        let mut steps: Vec<Option<u64>> = vec![None; n];
        match config.schedule {
            FreezeSchedule::None => {}
            FreezeSchedule::Adaptive => {} // decided during training
            FreezeSchedule::Linear => {
                // Unit g of G (1-based; each layer, or a ResNet's residual blocks) at
                // start + (end - start) g / G; the last unit, with the output, trains.
                let g_all = units.len();
                for (g, unit) in units.iter().enumerate().take(g_all.saturating_sub(1)) {
                    let f = config.start + (config.end - config.start) * (g + 1) as f64 / g_all as f64;
                    unit.clone().for_each(|i| steps[i] = Some(at(f)));
                }
            }
            FreezeSchedule::Explicit => {
                for a in &config.at {
                    if a.layer == crate::model::INPUT && !names.contains(&a.layer.as_str()) {
                        return Err(InputError::new(format!(
                            "freeze.at: '{}' is the network's input (the images it is fed), analysed as a layer but with no parameters: there is nothing to freeze; list layers of the network ({})",
                            a.layer,
                            names.join(" ")
                        )));
                    }
                    let block = a.layer.split_once('.').map(|b| b.0).filter(|b| names.contains(b));
                    if let (Some(block), false) = (block, names.contains(&a.layer.as_str())) {
                        return Err(InputError::new(format!(
                            "freeze.at: '{}' is inside residual block '{block}': freezing is per residual block (both its convs and batch norms at once); list '{block}'",
                            a.layer
                        )));
                    }
                    let Some(i) = names.iter().position(|l| *l == a.layer) else {
                        return Err(InputError::new(format!(
                            "freeze.at: no layer '{}' in this network; its layers are {}",
                            a.layer,
                            names.join(" ")
                        )));
                    };
                    if i + 1 == n {
                        return Err(InputError::new(format!("freeze.at: '{}' is the output layer; it always trains", a.layer)));
                    }
                    if steps[i].is_some() {
                        return Err(InputError::new(format!("freeze.at: layer '{}' is listed twice", a.layer)));
                    }
                    if let Some(s) = a.step.filter(|&s| s > total) {
                        return Err(InputError::new(format!(
                            "freeze.at: layer '{}': step {s} is past the end of training ({total} steps); give a step in 0..={total}, or a fraction",
                            a.layer
                        )));
                    }
                    steps[i] = Some(a.step.unwrap_or_else(|| at(a.fraction.unwrap_or(1.0))));
                }
                // Layers without parameters below a listed layer freeze with the next
                // listed layer above them; a layer with parameters must be listed.
                for i in (0..n).rev() {
                    if steps[i].is_none() {
                        if let Some(above) = steps[i + 1..].iter().flatten().min().copied() {
                            if has_params[i] {
                                return Err(InputError::new(format!(
                                    "freeze.at: layer '{}' lies below a frozen layer but is not listed; freezing is bottom-up, list it too",
                                    names[i]
                                )));
                            }
                            steps[i] = Some(above);
                        }
                    }
                }
                for i in 1..n {
                    if let (Some(a), Some(b)) = (steps[i - 1], steps[i]) {
                        if b < a {
                            return Err(InputError::new(format!(
                                "freeze.at: layer '{}' (step {b}) would freeze before '{}' below it (step {a}); freezing is bottom-up",
                                names[i],
                                names[i - 1]
                            )));
                        }
                    }
                }
            }
        }
        Ok(Plan {
            layers: names.iter().map(|s| s.to_string()).zip(steps).collect(),
            total,
            bn_eval: config.freeze_bn_stats,
            adaptive: config.schedule == FreezeSchedule::Adaptive,
        })
    }

    /// How many leading layers are frozen during training step `step` (0-based: the
    /// update that takes the network from `step` to `step + 1` updates).
    pub fn frozen_at(&self, step: u64) -> usize {
        self.layers.iter().take_while(|(_, s)| s.is_some_and(|s| s <= step)).count()
    }

    pub fn is_active(&self) -> bool {
        self.adaptive || self.layers.iter().any(|(_, s)| s.is_some())
    }

    /// Takes the decisions of an adaptive schedule up to `step` from `freeze.csv` in
    /// `run` (where a run resumed at `step` left them); later rows, written by a run
    /// killed after `step`, are ignored: the resumed run takes them again.
    pub fn restore(&mut self, run: &Path, step: u64) -> Result<(), InputError> {
        let path = run.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) if step == 0 => return Ok(()),
            Err(e) => {
                return Err(InputError::new(format!(
                    "{}: cannot read it ({e}); it holds the adaptive freeze schedule's decisions up to the checkpoint at step {step}, which cannot be recomputed: restore it, or train into a new folder",
                    path.display()
                )))
            }
        };
        let bad = |line: &str, why: &str| InputError::new(format!("{}: line '{line}': {why}", path.display()));
        if text.lines().next() != Some(HEADER) {
            return Err(bad(text.lines().next().unwrap_or(""), &format!("expected the header {HEADER}")));
        }
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (Some(name), Some(Ok(i)), Some(Ok(s))) =
                (f.first(), f.get(1).map(|v| v.parse::<usize>()), f.get(2).map(|v| v.parse::<u64>()))
            else {
                return Err(bad(line, "expected layer,index,step,fraction"));
            };
            if self.layers.get(i).map(|l| l.0.as_str()) != Some(*name) {
                return Err(bad(line, "no such layer at that index in this network"));
            }
            if s <= step {
                self.layers[i].1 = Some(s);
            }
        }
        let frozen = self.layers.iter().take_while(|l| l.1.is_some()).count();
        if self.layers[frozen..].iter().any(|l| l.1.is_some()) {
            return Err(InputError::new(format!("{}: the frozen layers are not a prefix of the network", path.display())));
        }
        Ok(())
    }

    /// Checks a `linear` or `explicit` plan against the `freeze.csv` of `run`, resumed at
    /// `step`: the layers it lists as frozen by then must be those this plan freezes by
    /// then, at the same steps. A folder frozen otherwise (by an earlier version whose
    /// linear schedule froze a ResNet layer by layer rather than block by block) is
    /// refused: resuming it would mix two schedules in one run.
    pub fn check_resumed(&self, run: &Path, step: u64) -> Result<(), InputError> {
        let path = run.join(FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let mut found: Vec<(String, u64)> = Vec::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            match (f.first(), f.get(2).and_then(|v| v.parse::<u64>().ok())) {
                (Some(name), Some(s)) if s <= step => found.push((name.to_string(), s)),
                _ => {}
            }
        }
        let planned: Vec<(String, u64)> =
            self.layers.iter().filter_map(|(name, s)| s.filter(|&s| s <= step).map(|s| (name.clone(), s))).collect();
        // The layers due at `step` itself freeze before that step's update, after the
        // checkpoint of `step` was written: a run stopped right after that checkpoint (a
        // signal, a kill) has not recorded them yet, and one stopped later has.
        let before = |v: &[(String, u64)]| v.iter().filter(|(_, s)| *s < step).cloned().collect::<Vec<_>>();
        let due_now = found.iter().filter(|(_, s)| *s == step).all(|f| planned.contains(f));
        if before(&found) == before(&planned) && due_now {
            return Ok(());
        }
        let show = |v: &[(String, u64)]| match v.is_empty() {
            true => "none".to_string(),
            false => v.iter().map(|(n, s)| format!("{n}@{s}")).collect::<Vec<_>>().join(" "),
        };
        Err(InputError::new(format!(
            "{}: the layers frozen by step {step} ({}) are not those this schedule freezes by then ({}): the run was frozen under another schedule (an earlier svcca froze a ResNet's layers one by one, this one freezes per residual block); finish it with the version that began it, or train into another --out",
            path.display(),
            show(&found),
            show(&planned)
        )))
    }

    /// The share of backward work saved over the whole run, given each layer's cost
    /// (`costs[i]`, e.g. multiply-adds of its weights): the mean over steps of the frozen
    /// prefix's share of the total cost.
    pub fn backward_saved(&self, costs: &[f64]) -> f64 {
        let all: f64 = costs.iter().sum();
        if all <= 0.0 || self.total == 0 {
            return 0.0;
        }
        let prefix = |k: usize| costs[..k].iter().sum::<f64>() / all;
        // Piecewise constant between freeze steps: sum without looping over every step.
        let mut bounds: Vec<u64> = self.layers.iter().filter_map(|(_, s)| *s).filter(|&s| s < self.total).collect();
        bounds.push(0);
        bounds.push(self.total);
        bounds.sort();
        bounds.dedup();
        let mut saved = 0.0;
        for w in bounds.windows(2) {
            saved += prefix(self.frozen_at(w[0])) * (w[1] - w[0]) as f64;
        }
        saved / self.total as f64
    }

    /// Writes `freeze.csv` in `run`: the layers frozen at or before `step`.
    pub fn write(&self, run: &Path, step: u64) -> anyhow::Result<()> {
        let mut text = format!("{HEADER}\n");
        for (i, (name, s)) in self.layers.iter().enumerate() {
            if let Some(s) = s.filter(|&s| s <= step) {
                text.push_str(&format!("{name},{i},{s},{:.4}\n", s as f64 / self.total.max(1) as f64));
            }
        }
        crate::io::write_atomic(&run.join(FILE), text.as_bytes())
    }
}

/// The steps at which layers froze in the finished run `run`, as its `freeze.csv` lists
/// them (one per frozen layer, in file order); none when the run has no `freeze.csv`.
pub fn steps(run: &Path) -> Result<Vec<u64>, InputError> {
    let path = run.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(InputError::new(format!("{}: cannot read it ({e})", path.display()))),
    };
    let bad = |line: &str| InputError::new(format!("{}: line '{line}': expected {HEADER}", path.display()));
    if text.lines().next() != Some(HEADER) {
        return Err(bad(text.lines().next().unwrap_or("")));
    }
    text.lines().skip(1).map(|line| line.split(',').nth(2).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| bad(line))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FreezeAt;

    fn names() -> Vec<&'static str> {
        vec!["c1", "c2", "p1", "c3", "logits"]
    }

    /// Every layer its own unit.
    fn singles() -> Vec<Range<usize>> {
        (0..5).map(|i| i..i + 1).collect()
    }

    #[test]
    fn a_run_stopped_at_a_freeze_step_resumes_whether_or_not_it_recorded_the_freeze() {
        let c = FreezeConfig { schedule: FreezeSchedule::Linear, ..Default::default() };
        let p = Plan::new(&c, &names(), &[true, true, false, true, true], &singles(), 100).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Stopped right after the checkpoint of step 40, before c2 (due at 40) froze.
        p.write(dir.path(), 39).unwrap();
        p.check_resumed(dir.path(), 40).unwrap();
        // Stopped after c2 froze.
        p.write(dir.path(), 40).unwrap();
        p.check_resumed(dir.path(), 40).unwrap();
        p.check_resumed(dir.path(), 50).unwrap();
        // A layer missing before the step, or one frozen at another step, is refused.
        let e = p.check_resumed(dir.path(), 70).unwrap_err().to_string();
        assert!(e.contains("c1@20 c2@40 p1@60") && e.contains("another schedule"), "{e}");
        std::fs::write(dir.path().join(FILE), format!("{HEADER}\nc1,0,20,0.2000\nc2,1,41,0.4100\n")).unwrap();
        assert!(p.check_resumed(dir.path(), 50).is_err());
        assert!(p.check_resumed(dir.path(), 41).is_err(), "c2 recorded at 41, planned at 40");
    }

    #[test]
    fn linear_is_i_over_l() {
        let c = FreezeConfig { schedule: FreezeSchedule::Linear, ..Default::default() };
        let p = Plan::new(&c, &names(), &[true, true, false, true, true], &singles(), 100).unwrap();
        let steps: Vec<Option<u64>> = p.layers.iter().map(|l| l.1).collect();
        assert_eq!(steps, [Some(20), Some(40), Some(60), Some(80), None]);
        assert_eq!(p.frozen_at(19), 0);
        assert_eq!(p.frozen_at(20), 1);
        assert_eq!(p.frozen_at(99), 4);
        let c = FreezeConfig { schedule: FreezeSchedule::Linear, start: 0.5, end: 1.0, ..Default::default() };
        let p = Plan::new(&c, &names(), &[true; 5], &singles(), 100).unwrap();
        assert_eq!(p.layers[0].1, Some(60));
        // Costs 1 each: layer 1 saved for 80 of 100 steps, ...: (0.8 + 0.6 + 0.4 + 0.2) / 5.
        let c = FreezeConfig { schedule: FreezeSchedule::Linear, ..Default::default() };
        let p = Plan::new(&c, &names(), &[true; 5], &singles(), 100).unwrap();
        assert!((p.backward_saved(&[1.0; 5]) - 2.0 / 5.0).abs() < 1e-12);
        // Units (a ResNet's blocks, with the stem in the first and the head in the last):
        // unit g of 3 at g/3, all its layers at once, the last unit training.
        let units = [0..2, 2..3, 3..5];
        let p = Plan::new(&c, &names(), &[true; 5], &units, 90).unwrap();
        let steps: Vec<Option<u64>> = p.layers.iter().map(|l| l.1).collect();
        assert_eq!(steps, [Some(30), Some(30), Some(60), None, None]);
    }

    #[test]
    fn explicit_fills_parameterless_layers_and_refuses_gaps() {
        let at = |l: &str, s: u64| FreezeAt { layer: l.into(), step: Some(s), fraction: None };
        let c =
            FreezeConfig { schedule: FreezeSchedule::Explicit, at: vec![at("c1", 10), at("c2", 20), at("c3", 30)], ..Default::default() };
        let p = Plan::new(&c, &names(), &[true, true, false, true, true], &singles(), 100).unwrap();
        assert_eq!(p.layers[2].1, Some(30));
        let c = FreezeConfig { schedule: FreezeSchedule::Explicit, at: vec![at("c2", 20)], ..Default::default() };
        assert!(Plan::new(&c, &names(), &[true; 5], &singles(), 100).unwrap_err().to_string().contains("'c1'"));
        let c = FreezeConfig { schedule: FreezeSchedule::Explicit, at: vec![at("c1", 30), at("c2", 20)], ..Default::default() };
        assert!(Plan::new(&c, &names(), &[true; 5], &singles(), 100).unwrap_err().to_string().contains("bottom-up"));
        let c = FreezeConfig { schedule: FreezeSchedule::Explicit, at: vec![at("logits", 30)], ..Default::default() };
        assert!(Plan::new(&c, &names(), &[true; 5], &singles(), 100).is_err());
        let c = FreezeConfig { schedule: FreezeSchedule::Explicit, at: vec![at("c9", 30)], ..Default::default() };
        assert!(Plan::new(&c, &names(), &[true; 5], &singles(), 100).unwrap_err().to_string().contains("c1 c2 p1 c3 logits"));
        // The input is analysed as a layer but has nothing to freeze.
        let c = FreezeConfig { schedule: FreezeSchedule::Explicit, at: vec![at("in", 10), at("c1", 10)], ..Default::default() };
        let e = Plan::new(&c, &names(), &[true; 5], &singles(), 100).unwrap_err().to_string();
        assert!(e.contains("'in' is the network's input") && e.contains("nothing to freeze"), "{e}");
    }
}
