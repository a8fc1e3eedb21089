//! A plugin's typed `config:` block: how `init` reads it (and reports where
//! it is wrong), and helpers for its fields.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// One thing wrong with a policy's `config:` block: where (a path such as
/// `rules[3].condition`, which the host turns into a line and column of the
/// policy file) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Keys joined by `.`, list positions in brackets; empty for the whole block.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Returns `config_json` read as `C`, or where and why it does not fit: what
/// the host's `warden check` reports for a policy whose config is wrong.
pub fn parse<C: serde::de::DeserializeOwned>(config_json: &str) -> Result<C, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(config_json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = match e.path().to_string() {
            // serde_path_to_error's name for "no path".
            p if p == "." => String::new(),
            p => p,
        };
        ConfigError {
            path,
            message: for_operators(&e.into_inner().to_string()),
        }
    })
}

/// Returns the plugin built from `config_json` as `init` builds it: [`parse`],
/// then `new`, whose error (with [`Error::at`](crate::Error::at) to point at a
/// field) is reported the same way.
pub fn build<T, C: serde::de::DeserializeOwned>(
    config_json: &str,
    new: fn(C) -> crate::Result<T>,
) -> Result<T, Vec<ConfigError>> {
    let config = parse(config_json).map_err(|e| vec![e])?;
    new(config).map_err(|e| {
        vec![ConfigError {
            path: e.path().unwrap_or_default().to_owned(),
            message: e.message().to_owned(),
        }]
    })
}

/// Rewrites serde's wording for people who write YAML: its JSON position is
/// meaningless to them (the host reports the YAML one) and enum variants are
/// just values there.
fn for_operators(message: &str) -> String {
    let mut m = message.to_owned();
    if let Some(i) = m.rfind(" at line ") {
        m.truncate(i);
    }
    m.replace("unknown variant", "unknown value")
}

/// A duration written as people write them in YAML: `250ms`, `30s`, `5m`,
/// `1h30m`, `7d`. A bare number is taken as milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Returns the duration in whole milliseconds.
    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                format!("`{s}` is not a duration ({e}); write it like `30s`, `5m` or `1h30m`")
            })
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(HumanDuration(Duration::from_millis(ms))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized")]
    struct Rule {
        condition: Op,
        threshold: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Op {
        Gt,
        Lt,
    }

    #[derive(Debug, Deserialize)]
    struct Rules {
        rules: Vec<Rule>,
    }

    #[test]
    fn errors_carry_the_path_of_the_field() {
        let e = parse::<Rules>(
            r#"{"rules":[{"condition":"gt","threshold":1},{"condition":"between","threshold":2}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "rules[1].condition");
        assert!(
            e.message
                .starts_with("unknown value `between`, expected `gt` or `lt`"),
            "{}",
            e.message
        );
        let e = parse::<Rules>(r#"{"rules":[{"condition":"gt"}]}"#).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("rules[0]", "missing field `threshold`")
        );
        let e = parse::<Rules>(r#"{"ruls":[]}"#).unwrap_err();
        assert!(e.message.contains("missing field `rules`"), "{e}");
        let built = build(r#"{"rules":[]}"#, |r: Rules| {
            if r.rules.is_empty() {
                Err(crate::Error::at("rules", "give at least one rule"))
            } else {
                Ok(())
            }
        });
        assert_eq!(
            built.unwrap_err(),
            vec![ConfigError {
                path: "rules".into(),
                message: "give at least one rule".into()
            }]
        );
    }

    #[test]
    fn parses_human_and_numeric_durations() {
        let d: HumanDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d.as_millis(), 5_400_000);
        let d: HumanDuration = serde_json::from_str("250").unwrap();
        assert_eq!(d.as_millis(), 250);
        let e = serde_json::from_str::<HumanDuration>("\"soon\"").unwrap_err();
        assert!(e.to_string().contains("`soon` is not a duration"), "{e}");
    }
}
