//! The settings enums' names: the spelling of each value in configs, on the command line
//! and in Python's keywords, from one list per enum ([`spelled!`]). The maths depends on
//! no command-line library: the command line (clap) and the Python module read these
//! lists. Serde's spelling (the config, the settings files) is the enums' own
//! `rename_all`, checked against the lists by the tests in `similarity/mod.rs`
//! (which can name both this module and the enums').

/// A settings enum spelled by name.
pub trait Named: Copy + 'static {
    /// Every value, with its name and a line of help ("" for none), in the order shown.
    const NAMES: &'static [(Self, &'static str, &'static str)];

    /// This value's name.
    fn name(self) -> &'static str;

    /// The value named `text`, in any case.
    fn from_name(text: &str) -> Option<Self> {
        Self::NAMES.iter().find(|n| n.1.eq_ignore_ascii_case(text)).map(|n| n.0)
    }

    /// The names as a message lists them: `a, b or c`.
    fn names() -> String {
        let names: Vec<&str> = Self::NAMES.iter().map(|n| n.1).collect();
        match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// Implements [`Named`], `Display` (the name) and `FromStr` (any case; the error names
/// `what` and the values) for an enum, from its values' names and, in parentheses, an
/// optional line of help for `--help`.
macro_rules! spelled {
    ($t:ident, $what:literal, { $($v:ident => $name:literal $(($help:literal))?),+ $(,)? }) => {
        impl $crate::similarity::Named for $t {
            const NAMES: &'static [(Self, &'static str, &'static str)] = &[$(($t::$v, $name, concat!("" $(, $help)?))),+];

            // A match, not a search of NAMES: a value added to the enum without a name
            // does not compile.
            fn name(self) -> &'static str {
                match self {
                    $($t::$v => $name),+
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::similarity::Named::name(*self))
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t as $crate::similarity::Named>::from_name(s)
                    .ok_or_else(|| format!("unknown {} '{s}': expected {}", $what, <$t as $crate::similarity::Named>::names()))
            }
        }
    };
}
pub(crate) use spelled;
