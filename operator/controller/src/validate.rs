//! Validate step: what the schema and CEL rules cannot express but the
//! operator can judge. A problem here becomes `SpecValid=False` and the
//! operator waits for the next change instead of retrying; a warning is
//! recorded as an Event and the spec stays valid.

use commlab_api::{BrokerKind, CacheKind, CommunicationPatternSpec};

/// Longest CommunicationPattern name whose children's names (the longest is
/// `<name>-database-credentials`) still fit a 63-character DNS label.
pub const MAX_NAME_LEN: usize = 63 - "-database-credentials".len();

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    /// Reasons the spec cannot be deployed; empty when it can.
    pub problems: Vec<String>,
    /// Settings that are ignored; the spec is still deployed.
    pub warnings: Vec<String>,
}

impl Judgement {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn judge(name: &str, spec: &CommunicationPatternSpec) -> Judgement {
    let mut judgement = Judgement::default();
    if name.len() > MAX_NAME_LEN || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        judgement.problems.push(format!(
            "metadata.name: must start with a lowercase letter and be at most {MAX_NAME_LEN} characters, \
             so the children's Service names are valid DNS labels"
        ));
    }
    let components = &spec.components;
    if let Some(broker) = &components.broker {
        if !spec.pattern.needs_broker() {
            judgement.warnings.push(format!(
                "spec.components.broker: {} uses no broker; the setting is ignored",
                spec.pattern
            ));
        } else if broker.kind == BrokerKind::RabbitMq {
            judgement.problems.push(
                "spec.components.broker.kind: RabbitMq is not supported yet; use Nats".to_owned(),
            );
        }
    }
    if let Some(cache) = &components.cache {
        if !spec.pattern.caches_prices() {
            judgement.warnings.push(format!(
                "spec.components.cache: {} keeps no cache; the setting is ignored",
                spec.pattern
            ));
        } else if cache.kind == CacheKind::Redis {
            judgement.problems.push(
                "spec.components.cache.kind: Redis is not supported yet; use InProcess".to_owned(),
            );
        }
    }
    judgement
}

#[cfg(test)]
mod tests {
    use commlab_api::{Broker, Cache, Pattern};

    use super::*;

    fn spec(pattern: Pattern) -> CommunicationPatternSpec {
        serde_json::from_value(serde_json::json!({ "pattern": pattern })).unwrap()
    }

    #[test]
    fn a_plain_spec_is_valid_without_warnings() {
        assert_eq!(
            judge("demo", &spec(Pattern::DirectApiCall)),
            Judgement::default()
        );
    }

    #[test]
    fn redis_cache_is_not_supported_yet() {
        let mut s = spec(Pattern::CacheWithUpdateEvents);
        s.components.cache = Some(Cache {
            kind: CacheKind::Redis,
        });
        let j = judge("demo", &s);
        assert!(!j.is_valid());
        assert!(
            j.problems[0].contains("spec.components.cache.kind"),
            "{j:?}"
        );
    }

    #[test]
    fn rabbitmq_is_not_supported_yet() {
        let mut s = spec(Pattern::AsyncMessaging);
        s.components.broker = Some(Broker {
            kind: BrokerKind::RabbitMq,
        });
        assert!(judge("demo", &s).problems[0].contains("spec.components.broker.kind"));
    }

    #[test]
    fn a_broker_for_a_pattern_without_one_is_only_a_warning() {
        let mut s = spec(Pattern::DirectApiCall);
        s.components.broker = Some(Broker {
            kind: BrokerKind::RabbitMq,
        });
        let j = judge("demo", &s);
        assert!(j.is_valid());
        assert!(j.warnings[0].contains("ignored"));
    }

    #[test]
    fn names_must_leave_room_for_child_names() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(!judge(&long, &spec(Pattern::SharedData)).is_valid());
        assert!(judge(&"a".repeat(MAX_NAME_LEN), &spec(Pattern::SharedData)).is_valid());
        assert!(!judge("1demo", &spec(Pattern::SharedData)).is_valid());
    }
}
