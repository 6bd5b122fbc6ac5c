//! `--set key=value`: a dotted key into the config's TOML table, the value read as TOML
//! (`train.steps=20`, `train.nesterov=false`, `train.milestones=[0.3,0.6]`) or, when it
//! is not valid TOML, as a string (`data.path=/data/cifar`).

use crate::error::InputError;

pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), InputError> {
    let bad = |why: &str| InputError::new(format!("--set {assignment}: {why}"));
    let (key, value) = assignment.split_once('=').ok_or_else(|| bad("expected key=value, e.g. train.steps=20"))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("the key must be dotted names such as train.lr"));
    }
    let value = parse_value(value.trim());
    let mut node = table;
    for part in &parts[..parts.len() - 1] {
        let entry = node.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(bad(&format!("'{part}' is a value, not a section"))),
        };
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn parse_value(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("just parsed"),
        Err(_) => toml::Value::String(text.to_string()),
    }
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
}
