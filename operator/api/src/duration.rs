//! Durations as users write them in manifests: Go-style strings such as `30s`,
//! `1m30s` or `250ms`, the same format Kubernetes' CEL `duration()` parses, so a
//! CEL rule and the operator agree on what a value means.

use std::{borrow::Cow, fmt, str::FromStr, time};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A non-negative duration that keeps the text it was written as, so a
/// manifest read and written back is unchanged.
#[derive(Clone, Debug, Eq)]
pub struct Duration {
    text: String,
    value: time::Duration,
}

/// Units accepted in a duration, written as a regular expression for the schema.
/// Nanoseconds and microseconds are left out on purpose: nothing in an
/// experiment is that short, and a typo such as `5us` for `5s` should fail.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("`{0}` is not a duration: write it like 30s, 1m30s or 250ms")]
    Malformed(String),
    #[error("`{0}` is negative: durations must be zero or more")]
    Negative(String),
}

impl Duration {
    pub fn as_std(&self) -> time::Duration {
        self.value
    }

    pub fn from_secs(secs: u64) -> Self {
        time::Duration::from_secs(secs).into()
    }

    pub fn from_millis(millis: u64) -> Self {
        time::Duration::from_millis(millis).into()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<time::Duration> for Duration {
    /// Writes whole seconds as `Ns` and anything finer as `Nms`, both of which
    /// CEL's `duration()` and [`DURATION_PATTERN`] accept.
    fn from(value: time::Duration) -> Self {
        let text = if value.subsec_millis() == 0 {
            format!("{}s", value.as_secs())
        } else {
            format!("{}ms", value.as_millis())
        };
        Self { text, value }
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let well_formed = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'm' | 's' | 'h'))
            && text.ends_with(['s', 'm', 'h']);
        if text.starts_with('-') {
            return Err(DurationError::Negative(text.to_owned()));
        }
        if !well_formed {
            return Err(DurationError::Malformed(text.to_owned()));
        }
        let parsed: kube::core::Duration = text
            .parse()
            .map_err(|_| DurationError::Malformed(text.to_owned()))?;
        Ok(Self {
            text: text.to_owned(),
            value: parsed.into(),
        })
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl PartialOrd for Duration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Duration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let d: Duration = "1m30s".parse().unwrap();
        assert_eq!(d.as_std(), time::Duration::from_secs(90));
        assert_eq!(d.to_string(), "1m30s");
        let d: Duration = "250ms".parse().unwrap();
        assert_eq!(d.as_std(), time::Duration::from_millis(250));
    }

    #[test]
    fn rejects_what_users_get_wrong() {
        assert_eq!(
            "-5s".parse::<Duration>(),
            Err(DurationError::Negative("-5s".into()))
        );
        for bad in ["", "5", "5 s", "5us", "five seconds", "5d"] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn std_durations_print_in_a_form_that_parses_back() {
        for d in [
            time::Duration::from_secs(20),
            time::Duration::from_millis(1500),
        ] {
            let written = Duration::from(d);
            assert_eq!(written.to_string().parse::<Duration>().unwrap().as_std(), d);
        }
    }
}
