//! What `svcca analyze --compression` is asked: the layers (`LAYER[:FRACTION]`), the
//! reference the directions are fitted against (`--against`), `--distributedness` and
//! `--jointly`, what a compressed layer keeps ([`CompressionMethod`]), and the settings a
//! results folder records.

use crate::error::InputError;
use crate::similarity::KeepRule;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One `--compression` item: a layer, and optionally the fraction of its units to keep
/// when all listed layers are compressed at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub layer: String,
    pub fraction: Option<f64>,
}

impl std::str::FromStr for LayerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (layer, fraction) = match s.split_once(':') {
            Some((l, f)) => {
                let v: f64 = f.parse().map_err(|_| format!("'{s}': the fraction '{f}' is not a number"))?;
                if !(v > 0.0 && v <= 1.0) {
                    return Err(format!("'{s}': the fraction must be in (0, 1], got {f}"));
                }
                (l, Some(v))
            }
            None => (s, None),
        };
        if layer.is_empty() {
            return Err(format!("'{s}': no layer name (expected LAYER or LAYER:FRACTION)"));
        }
        Ok(LayerSpec { layer: layer.to_string(), fraction })
    }
}

/// What the SVCCA directions are computed against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    /// The same network's logits.
    Logits,
    /// The same layer of another run's final network.
    Run(PathBuf),
    /// The same layer of this run at another checkpoint.
    Step(u64),
}

impl Reference {
    /// The name of this reference's results: `compression-logits`, or
    /// `compression-run-NAME` after the other run's folder name.
    pub fn tag(&self) -> String {
        match self {
            Reference::Logits => "compression-logits".into(),
            Reference::Run(p) => {
                let name = p.file_name().map_or("run".into(), |n| n.to_string_lossy().into_owned());
                let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
                format!("compression-run-{safe}")
            }
            Reference::Step(step) => format!("compression-step-{step}"),
        }
    }
}

impl std::str::FromStr for Reference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "logits" {
            return Ok(Reference::Logits);
        }
        if let Some(step) = s.strip_prefix("step:") {
            return step.parse().map(Reference::Step).map_err(|_| format!("'{s}': expected step:N with N a checkpoint's step"));
        }
        Ok(Reference::Run(PathBuf::from(s)))
    }
}

/// The settings of a results folder (`settings.json`): results made under others are
/// not mixed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub against: Reference,
    pub keep: f64,
    /// How `keep` counts the directions (absent in folders written before: variance).
    #[serde(default)]
    pub keep_rule: KeepRule,
    pub fit_size: usize,
    pub seed: u64,
    pub final_step: u64,
    /// `--eval-images N`: the accuracies are on a seeded subset of N test images (absent:
    /// the whole test split, as in folders written before the flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_images: Option<usize>,
}

/// What a compressed layer keeps: its top-k SVCCA directions, or (the baselines) its k
/// most active units or k random units, the others held at their mean. (Not
/// [`crate::similarity::Method`], the similarity measure.) Written `svcca`, `active` and
/// `random` in the tables and JSON files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionMethod {
    Svcca,
    Active,
    Random,
}

impl CompressionMethod {
    pub const ALL: [CompressionMethod; 3] = [CompressionMethod::Svcca, CompressionMethod::Active, CompressionMethod::Random];

    pub fn as_str(self) -> &'static str {
        match self {
            CompressionMethod::Svcca => "svcca",
            CompressionMethod::Active => "active",
            CompressionMethod::Random => "random",
        }
    }
}

impl std::fmt::Display for CompressionMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `--distributedness` value: a number of neurons, or (with a decimal point) a
/// fraction of each layer's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Neurons {
    Count(usize),
    Fraction(f64),
}

impl Neurons {
    /// The neurons kept of a layer of `units` units (a fraction rounded up, at least 1);
    /// a count above `units` is an error naming the layer.
    pub fn of(self, layer: &str, units: usize) -> Result<usize, InputError> {
        match self {
            Neurons::Count(m) if m > units => {
                Err(InputError::new(format!("--distributedness {m}: layer {layer} has only {units} units (neurons or channels)")))
            }
            Neurons::Count(m) => Ok(m),
            Neurons::Fraction(f) => Ok(((f * units as f64).ceil() as usize).clamp(1, units)),
        }
    }
}

impl std::str::FromStr for Neurons {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('.') {
            let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("'{s}': a fraction of the units must be in (0, 1]"));
            }
            Ok(Neurons::Fraction(v))
        } else {
            match s.parse::<usize>() {
                Ok(0) => Err(format!("'{s}': keep at least 1 neuron")),
                Ok(m) => Ok(Neurons::Count(m)),
                Err(_) => Err(format!("'{s}': expected a number of neurons (e.g. 32) or a fraction of the units (e.g. 0.25)")),
            }
        }
    }
}

/// The analyses `--compression` adds on request: Figure 2b and Appendix 5.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// `--distributedness M,...`: per layer, the top-k projection then only the m neurons
    /// most important to those k directions, for each m.
    pub distributedness: Vec<Neurons>,
    /// `--jointly`: every listed layer compressed at once to k directions (or neurons), k
    /// swept.
    pub jointly: bool,
}

#[cfg(test)]
mod tests {
    use super::{LayerSpec, Reference};
    use std::path::PathBuf;

    #[test]
    fn flags() {
        assert_eq!("fc1:0.1".parse::<LayerSpec>().unwrap(), LayerSpec { layer: "fc1".into(), fraction: Some(0.1) });
        assert_eq!("c3".parse::<LayerSpec>().unwrap(), LayerSpec { layer: "c3".into(), fraction: None });
        assert!("fc1:0".parse::<LayerSpec>().is_err());
        assert!("fc1:x".parse::<LayerSpec>().is_err());
        assert!(":0.5".parse::<LayerSpec>().is_err());
        assert_eq!(Reference::Logits.tag(), "compression-logits");
        assert_eq!(Reference::Run(PathBuf::from("runs/seed 1/")).tag(), "compression-run-seed_1");
        assert_eq!("step:700".parse::<Reference>().unwrap(), Reference::Step(700));
        assert_eq!(Reference::Step(700).tag(), "compression-step-700");
        assert!("step:x".parse::<Reference>().is_err());
        assert_eq!("logits".parse::<Reference>().unwrap(), Reference::Logits);
    }
}
