//! `--set key=value`: a dotted key into the config's TOML table, the value read as TOML
//! (`train.steps=20`, `train.nesterov=false`, `train.milestones=[0.3,0.6]`) or, when it
//! is not valid TOML, as a string (`data.path=/data/cifar`). `--unset key` reaches here
//! as `-key` and removes the key (its default then applies).
//!
//! Keys that give the same thing two ways replace each other: `--set train.steps=200` on
//! a config that sets `train.epochs` trains 200 steps (and says so), as a user means.

use crate::error::InputError;

/// Pairs of keys of which a config gives at most one: setting either removes the other.
const ALTERNATIVES: [(&str, &str); 1] = [("train.steps", "train.epochs")];

/// The override that `--unset key` stands for.
pub fn unset(key: &str) -> String {
    format!("-{key}")
}

pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), InputError> {
    if let Some(key) = assignment.strip_prefix('-') {
        let key = key.trim();
        let bad = |why: &str| InputError::new(format!("--unset {key}: {why}"));
        let parts = dotted(key).map_err(|why| bad(&why))?;
        let Some(parent) = section(table, &parts[..parts.len() - 1], false).map_err(|why| bad(&why))? else {
            return Ok(());
        };
        parent.remove(parts[parts.len() - 1]);
        return Ok(());
    }
    let bad = |why: &str| InputError::new(format!("--set {assignment}: {why}"));
    let (key, value) = assignment.split_once('=').ok_or_else(|| bad("expected key=value, e.g. train.steps=20"))?;
    let key = key.trim();
    let parts = dotted(key).map_err(|why| bad(&why))?;
    let value = parse_value(value.trim()).map_err(|why| bad(&why))?;
    if value.is_table() {
        return Err(bad(&format!(
            "sets a whole table, which would replace every key of {key} the config gives: set its keys one by one instead, e.g. --set {key}.KEY=VALUE"
        )));
    }
    let node = section(table, &parts[..parts.len() - 1], true).map_err(|why| bad(&why))?.expect("made when missing");
    node.insert(parts[parts.len() - 1].to_string(), value);
    for (x, y) in ALTERNATIVES {
        let other = if key == x {
            y
        } else if key == y {
            x
        } else {
            continue;
        };
        let (section_key, name) = other.rsplit_once('.').expect("dotted");
        let parent = table.get_mut(section_key).and_then(toml::Value::as_table_mut);
        if let Some(was) = parent.and_then(|t| t.remove(name)) {
            tracing::info!("--set {assignment}: replaces the config's {other} = {was} (a config gives one or the other)");
        }
    }
    Ok(())
}

/// The parts of a dotted key, refused where one is empty.
fn dotted(key: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("the key must be dotted names such as train.lr".into());
    }
    Ok(parts)
}

/// The table at `path` inside `table`, made where missing when `make` (else `None`).
fn section<'t>(table: &'t mut toml::Table, path: &[&str], make: bool) -> Result<Option<&'t mut toml::Table>, String> {
    let mut node = table;
    for part in path {
        if !make && !node.contains_key(*part) {
            return Ok(None);
        }
        let entry = node.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("'{part}' is a value, not a section")),
        };
    }
    Ok(Some(node))
}

/// The value as TOML, else as a string; a number TOML cannot hold (an integer past
/// 64 bits) is refused rather than read as a string.
fn parse_value(text: &str) -> Result<toml::Value, String> {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => Ok(t.remove("v").expect("just parsed")),
        Err(_) if is_integer(text) => {
            Err(format!("{text} is out of range: integers must lie between {} and {} (64-bit)", i64::MIN, i64::MAX))
        }
        Err(_) => Ok(toml::Value::String(text.to_string())),
    }
}

/// Whether `text` is written as an integer: an optional sign, then digits (and `_`).
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    digits.starts_with(|c: char| c.is_ascii_digit()) && digits.chars().all(|c| c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed() {
        let mut t = toml::Table::new();
        apply_override(&mut t, "train.steps=20").unwrap();
        apply_override(&mut t, "data.path=/tmp/x y").unwrap();
        apply_override(&mut t, "train.milestones=[0.3, 0.6]").unwrap();
        assert_eq!(t["train"]["steps"].as_integer(), Some(20));
        assert_eq!(t["data"]["path"].as_str(), Some("/tmp/x y"));
        assert_eq!(t["train"]["milestones"].as_array().unwrap().len(), 2);
        assert!(apply_override(&mut t, "nonsense").is_err());
        assert!(apply_override(&mut t, "train.steps.x=1").is_err());
    }

    #[test]
    fn numbers_out_of_range_and_whole_tables_are_refused() {
        let mut t = toml::Table::new();
        let e = apply_override(&mut t, "train.steps=18446744073709551615").unwrap_err().to_string();
        assert!(e.contains("out of range") && e.contains("9223372036854775807"), "{e}");
        apply_override(&mut t, "train.steps=9223372036854775807").unwrap();
        let e = apply_override(&mut t, "train={lr=0.1}").unwrap_err().to_string();
        assert!(e.contains("whole table") && e.contains("train.KEY=VALUE"), "{e}");
        assert_eq!(t["train"]["steps"].as_integer(), Some(i64::MAX), "the table was left as it was: {t:?}");
        // A string of digits and letters is still a string.
        apply_override(&mut t, "data.path=123abc").unwrap();
        assert_eq!(t["data"]["path"].as_str(), Some("123abc"));
    }

    #[test]
    fn steps_and_epochs_replace_each_other_and_keys_can_be_removed() {
        let mut t: toml::Table = toml::from_str("[train]\nepochs = 30.0\nlr = 0.1\n").unwrap();
        apply_override(&mut t, "train.steps=200").unwrap();
        assert_eq!(t["train"]["steps"].as_integer(), Some(200));
        assert!(t["train"].get("epochs").is_none(), "{t:?}");
        apply_override(&mut t, "train.epochs=2.5").unwrap();
        assert!(t["train"].get("steps").is_none(), "{t:?}");
        apply_override(&mut t, &unset("train.epochs")).unwrap();
        assert!(t["train"].get("epochs").is_none(), "{t:?}");
        assert_eq!(t["train"]["lr"].as_float(), Some(0.1));
        // Removing what is not there is no error; removing through a value is.
        apply_override(&mut t, &unset("freeze.at")).unwrap();
        assert!(t.get("freeze").is_none(), "a missing section is not made: {t:?}");
        let e = apply_override(&mut t, &unset("train.lr.x")).unwrap_err().to_string();
        assert!(e.contains("--unset train.lr.x") && e.contains("'lr' is a value"), "{e}");
    }
}
