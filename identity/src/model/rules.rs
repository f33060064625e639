//! The identity rules: which identifier kinds outrank which, how many of a kind one customer
//! may hold, which kinds may join two known customers, and which values are never trusted.
//!
//! They come from a TOML file (`identity/rules.default.toml` is compiled in as the default) so
//! that a data team can change them, preview what re-resolving history would do, and apply
//! them by replay. Everything here is pure and synchronous.

use kinfold_core::{Identifier, IdentifierKind};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// The rules compiled in, used when no rule file is configured.
pub const DEFAULT_RULES: &str = include_str!("../../rules.default.toml");

/// The rule file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Identifier kinds from strongest to weakest. The strongest identifier of an event decides
    /// which customer it belongs to when its identifiers disagree. Kinds not listed rank last.
    pub priority: Vec<IdentifierKind>,
    /// Kinds that may join two customers already known: verified, server-side identifiers. An
    /// identifier of another kind (a device id, an e-mail) is linked to a customer but never
    /// pulls an event, or another customer, to the one that holds it.
    #[serde(default)]
    pub merge_on: Vec<IdentifierKind>,
    /// How many identifiers of a kind one customer may hold.
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// Values never trusted as identifiers, on top of the junk that ingest already refuses
    /// (placeholders, all zeros, known test numbers).
    #[serde(default)]
    pub blocked: Vec<Blocked>,
}

/// At most `max` identifiers of `kind` per customer; with `per_issuer`, at most `max` from each
/// issuer (one openid per app id, for instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub kind: IdentifierKind,
    pub max: u32,
    #[serde(default)]
    pub per_issuer: bool,
}

/// A blocked value: exactly `value`, or any value matching the regular expression `pattern`;
/// for one kind, or for every kind when `kind` is absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocked {
    #[serde(default)]
    pub kind: Option<IdentifierKind>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    /// Why, for the record (shown in refusals).
    #[serde(default)]
    pub note: Option<String>,
}

/// Why a rule file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rule file: {0}")]
    Syntax(String),
    #[error("`{0}` appears twice in `priority`")]
    DuplicatePriority(IdentifierKind),
    #[error("two limits for `{0}`")]
    DuplicateLimit(IdentifierKind),
    #[error("limit for `{0}` is 0: such identifiers could never be linked")]
    ZeroLimit(IdentifierKind),
    #[error("blocked entry {index}: give exactly one of `value` and `pattern`")]
    BlockedShape { index: usize },
    #[error("blocked entry {index}: invalid pattern: {reason}")]
    BlockedPattern { index: usize, reason: String },
}

/// A blocked value, ready to match.
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Pattern(regex::Regex),
}

#[derive(Debug, Clone)]
struct BlockedRule {
    kind: Option<IdentifierKind>,
    matcher: Matcher,
    label: String,
}

/// The rules, checked and ready to apply.
#[derive(Debug, Clone)]
pub struct Rules {
    file: RulesFile,
    /// By [`kind_index`]: rank, whether it merges, its limit.
    rank: [usize; KINDS],
    merges: [bool; KINDS],
    limits: [Option<(usize, bool)>; KINDS],
    blocked: Vec<BlockedRule>,
    /// By [`kind_index`]: the blocked rules that apply to the kind, in file order.
    blocked_for: [Vec<usize>; KINDS],
}

const KINDS: usize = IdentifierKind::ALL.len();

/// The place of `kind` in [`IdentifierKind::ALL`], for the rules' tables: its declaration
/// order, which `ALL` follows (a unit test checks it).
fn kind_index(kind: IdentifierKind) -> usize {
    kind as usize
}

impl Rules {
    /// The compiled-in default rules.
    pub fn default_rules() -> Self {
        Self::from_toml(DEFAULT_RULES).expect("the default rules are valid")
    }

    /// Parses and checks a rule file.
    pub fn from_toml(text: &str) -> Result<Self, RulesError> {
        let file: RulesFile =
            toml::from_str(text).map_err(|error| RulesError::Syntax(error.to_string()))?;
        Self::new(file)
    }

    /// Checks `file` and prepares it.
    pub fn new(file: RulesFile) -> Result<Self, RulesError> {
        let mut rank = BTreeMap::new();
        for (position, kind) in file.priority.iter().enumerate() {
            if rank.insert(*kind, position).is_some() {
                return Err(RulesError::DuplicatePriority(*kind));
            }
        }
        let mut limits = BTreeMap::new();
        for limit in &file.limits {
            if limit.max == 0 {
                return Err(RulesError::ZeroLimit(limit.kind));
            }
            if limits
                .insert(limit.kind, (limit.max as usize, limit.per_issuer))
                .is_some()
            {
                return Err(RulesError::DuplicateLimit(limit.kind));
            }
        }
        let mut blocked = Vec::with_capacity(file.blocked.len());
        for (index, entry) in file.blocked.iter().enumerate() {
            let (matcher, shown) = match (&entry.value, &entry.pattern) {
                (Some(value), None) => (Matcher::Exact(value.clone()), value.clone()),
                (None, Some(pattern)) => {
                    let anchored = format!("^(?:{pattern})$");
                    let regex = regex::Regex::new(&anchored).map_err(|error| {
                        RulesError::BlockedPattern {
                            index,
                            reason: error.to_string(),
                        }
                    })?;
                    (Matcher::Pattern(regex), format!("/{pattern}/"))
                }
                _ => return Err(RulesError::BlockedShape { index }),
            };
            let scope = entry
                .kind
                .map_or("any kind".to_owned(), |kind| kind.to_string());
            let label = match &entry.note {
                Some(note) => format!("blocked value {shown} ({scope}): {note}"),
                None => format!("blocked value {shown} ({scope})"),
            };
            blocked.push(BlockedRule {
                kind: entry.kind,
                matcher,
                label,
            });
        }
        let mut rank_table = [rank.len(); KINDS];
        for (kind, position) in &rank {
            rank_table[kind_index(*kind)] = *position;
        }
        let mut merges = [false; KINDS];
        for kind in &file.merge_on {
            merges[kind_index(*kind)] = true;
        }
        let mut limit_table = [None; KINDS];
        for (kind, limit) in &limits {
            limit_table[kind_index(*kind)] = Some(*limit);
        }
        let blocked_for = IdentifierKind::ALL.map(|kind| {
            (0..blocked.len())
                .filter(|at| blocked[*at].kind.is_none_or(|only| only == kind))
                .collect()
        });
        Ok(Self {
            file,
            rank: rank_table,
            merges,
            limits: limit_table,
            blocked,
            blocked_for,
        })
    }

    /// The rule file these rules came from.
    pub fn file(&self) -> &RulesFile {
        &self.file
    }

    /// The rank of `kind`: 0 is the strongest; unlisted kinds rank after every listed one.
    pub fn rank(&self, kind: IdentifierKind) -> usize {
        self.rank[kind_index(kind)]
    }

    /// Whether an identifier of `kind` may join two known customers.
    pub fn merges_on(&self, kind: IdentifierKind) -> bool {
        self.merges[kind_index(kind)]
    }

    /// The limit on `kind`: how many, and whether per issuer.
    pub fn limit(&self, kind: IdentifierKind) -> Option<(usize, bool)> {
        self.limits[kind_index(kind)]
    }

    /// The blocked rule `identifier` falls under, described, if any.
    pub fn blocked(&self, identifier: &Identifier) -> Option<&str> {
        self.blocked_for[kind_index(identifier.kind)]
            .iter()
            .map(|at| &self.blocked[*at])
            .find(|rule| match &rule.matcher {
                Matcher::Exact(value) => *value == identifier.value,
                Matcher::Pattern(regex) => regex.is_match(&identifier.value),
            })
            .map(|rule| rule.label.as_str())
    }

    /// The first limit that a customer holding `identifiers` breaks, described, if any
    /// (first in (kind, issuer) order).
    pub fn broken_limit<'a, I: Borrow<Identifier> + 'a>(
        &self,
        identifiers: impl IntoIterator<Item = &'a I>,
    ) -> Option<String> {
        // A customer holds a handful of identifiers: count them in a small sorted list.
        let mut limited: SmallVec<[(IdentifierKind, Option<&str>); 16]> = identifiers
            .into_iter()
            .map(Borrow::borrow)
            .filter_map(|identifier: &Identifier| {
                let (_, per_issuer) = self.limit(identifier.kind)?;
                Some((
                    identifier.kind,
                    per_issuer.then_some(identifier.issuer.as_str()),
                ))
            })
            .collect();
        limited.sort_unstable();
        limited.chunk_by(|a, b| a == b).find_map(|group| {
            let (kind, issuer) = group[0];
            let (max, _) = self.limit(kind)?;
            (group.len() > max).then(|| match issuer {
                Some(issuer) => format!("at most {max} {kind} per issuer ({issuer})"),
                None => format!("at most {max} {kind} per customer"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::tests::id;

    #[test]
    fn every_kind_sits_at_its_declaration_order_in_all() {
        for (position, kind) in IdentifierKind::ALL.iter().enumerate() {
            assert_eq!(kind_index(*kind), position, "{kind}");
        }
    }

    #[test]
    fn the_default_rules_rank_merge_and_limit_as_the_domain_says() {
        let rules = Rules::default_rules();
        let order = [
            IdentifierKind::MemberCard,
            IdentifierKind::Phone,
            IdentifierKind::WechatUnionid,
            IdentifierKind::WechatOpenid,
            IdentifierKind::DeviceId,
        ];
        for pair in order.windows(2) {
            assert!(rules.rank(pair[0]) < rules.rank(pair[1]), "{pair:?}");
        }
        assert!(rules.merges_on(IdentifierKind::MemberCard));
        assert!(!rules.merges_on(IdentifierKind::DeviceId));
        let two_cards = [
            id(IdentifierKind::MemberCard, "b", "1"),
            id(IdentifierKind::MemberCard, "b", "2"),
        ];
        assert!(rules.broken_limit(&two_cards).is_some());
        let openids_of_two_apps = [
            id(IdentifierKind::WechatOpenid, "app1", "o1"),
            id(IdentifierKind::WechatOpenid, "app2", "o2"),
        ];
        assert_eq!(rules.broken_limit(&openids_of_two_apps), None);
        let openids_of_one_app = [
            id(IdentifierKind::WechatOpenid, "app1", "o1"),
            id(IdentifierKind::WechatOpenid, "app1", "o2"),
        ];
        assert!(rules.broken_limit(&openids_of_one_app).is_some());
    }

    #[test]
    fn blocked_values_match_exactly_or_whole_patterns() {
        let rules = Rules::from_toml(
            r#"
            priority = ["phone", "device_id"]
            [[blocked]]
            kind = "device_id"
            value = "ipad-store-1"
            [[blocked]]
            pattern = "test.*"
            note = "qa accounts"
            "#,
        )
        .expect("valid");
        assert!(
            rules
                .blocked(&id(IdentifierKind::DeviceId, "app", "ipad-store-1"))
                .is_some()
        );
        assert!(
            rules
                .blocked(&id(IdentifierKind::Email, "", "ipad-store-1"))
                .is_none()
        );
        assert!(
            rules
                .blocked(&id(IdentifierKind::Email, "", "test42@x.cn"))
                .is_some()
        );
        assert!(
            rules
                .blocked(&id(IdentifierKind::Email, "", "atest@x.cn"))
                .is_none()
        );
    }

    #[test]
    fn bad_rule_files_say_what_is_wrong() {
        for (text, expected) in [
            ("priority = [\"phone\", \"phone\"]", "appears twice"),
            (
                "priority = []\n[[limits]]\nkind = \"phone\"\nmax = 0",
                "is 0",
            ),
            (
                "priority = []\n[[blocked]]\nvalue = \"x\"\npattern = \"y\"",
                "exactly one",
            ),
            (
                "priority = []\n[[blocked]]\npattern = \"(\"",
                "invalid pattern",
            ),
            ("priority = [\"fax\"]", "rule file"),
            ("priority = []\nsurprise = 1", "rule file"),
        ] {
            let error = Rules::from_toml(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
