//! Pointing at the place in a config file that an error is about: its line number and
//! dotted key, so that a message fits on one line.

use crate::error::InputError;

/// One line for a TOML or schema error: `FILE:LINE: KEY: message`.
pub(super) fn parse_error(name: &str, text: &str, e: &toml::de::Error) -> InputError {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = line_at(text, span.start);
            match key_at(text, span.start) {
                Some(key) => InputError::new(format!("{name}:{line}: {key}: {message}")),
                None => InputError::new(format!("{name}:{line}: {message}")),
            }
        }
        None => InputError::new(format!("{name}: {message}")),
    }
}

/// 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key of the `key = value` line holding `offset`, with its `[section]`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = line.split('=').next()?.trim();
    if key.is_empty() || key.starts_with('[') || !line.contains('=') {
        return None;
    }
    let section = section_before(&text[..start]);
    Some(match section {
        Some(s) => format!("{s}.{key}"),
        None => key.to_string(),
    })
}

fn section_before(text: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']')).then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    })
}

/// Line of the key `section.name` in a file (for errors found after parsing).
pub(super) fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.')?;
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.starts_with('[') && l.ends_with(']') {
            current = Some(l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        } else if current.as_deref() == Some(section) && l.split('=').next().map(str::trim) == Some(key) && l.contains('=') {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_and_keys() {
        let text = "[data]\ndataset = \"x\"\n\n[train]\nlr = 0.1\n";
        assert_eq!(line_of(text, "train.lr"), Some(5));
        assert_eq!(line_of(text, "data.lr"), None);
        assert_eq!(key_at(text, text.find("lr").unwrap()), Some("train.lr".into()));
        assert_eq!(line_at(text, text.find("lr").unwrap()), 5);
    }
}
