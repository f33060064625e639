//! Typed, scoped identifiers: (kind, issuer, value), normalised, with junk refused.
//!
//! A POS till or a web form sends whatever it has: `"null"`, `"0"`, `"00000000000"`, a test
//! number. Such values would glue unrelated customers together in identity resolution, so they
//! never become an `Identifier`; the caller drops them and counts a warning.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest identifier value accepted, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 128;

/// Identifier types, in the vocabulary of DOMAIN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Phone,
    WechatUnionid,
    WechatOpenid,
    WecomExternalUserid,
    MemberCard,
    YouzanOpenId,
    TaobaoOuid,
    TmallOmid,
    JdOpenId,
    ShopifyCustomerId,
    Email,
    DeviceId,
}

impl IdentifierKind {
    /// Every kind, in declaration order.
    pub const ALL: [IdentifierKind; 12] = [
        Self::Phone,
        Self::WechatUnionid,
        Self::WechatOpenid,
        Self::WecomExternalUserid,
        Self::MemberCard,
        Self::YouzanOpenId,
        Self::TaobaoOuid,
        Self::TmallOmid,
        Self::JdOpenId,
        Self::ShopifyCustomerId,
        Self::Email,
        Self::DeviceId,
    ];

    /// The snake_case name used in schemas, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::WechatUnionid => "wechat_unionid",
            Self::WechatOpenid => "wechat_openid",
            Self::WecomExternalUserid => "wecom_external_userid",
            Self::MemberCard => "member_card",
            Self::YouzanOpenId => "youzan_open_id",
            Self::TaobaoOuid => "taobao_ouid",
            Self::TmallOmid => "tmall_omid",
            Self::JdOpenId => "jd_open_id",
            Self::ShopifyCustomerId => "shopify_customer_id",
            Self::Email => "email",
            Self::DeviceId => "device_id",
        }
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentifierKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown identifier kind `{s}`"))
    }
}

/// Why a raw value was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JunkIdentifier {
    #[error("empty value")]
    Empty,
    #[error("placeholder value `{0}`")]
    Placeholder(String),
    #[error("all zeros")]
    AllZeros,
    #[error("known test value")]
    TestValue,
    #[error("value longer than {MAX_IDENTIFIER_LEN} bytes")]
    TooLong,
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

impl JunkIdentifier {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Placeholder(_) => "placeholder",
            Self::AllZeros => "all_zeros",
            Self::TestValue => "test_value",
            Self::TooLong => "too_long",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// A normalised identifier. Construct with [`Identifier::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    /// What kind of identifier this is.
    pub kind: IdentifierKind,
    /// The scope that issued it: a country calling code for phones, an app id for openids, a
    /// brand for member cards, a shop for platform buyer ids, empty for emails.
    pub issuer: String,
    /// The normalised value (E.164 for phones, lower case for emails).
    pub value: String,
}

const PLACEHOLDERS: [&str; 9] = [
    "null",
    "undefined",
    "none",
    "nil",
    "nan",
    "n/a",
    "na",
    "-",
    "unknown",
];

impl Identifier {
    /// Normalises `raw` as an identifier of `kind` issued by `issuer`, or says why it is junk.
    ///
    /// For phones, `issuer` is the default country calling code (for example `86`) used when the
    /// number has none; the stored issuer is the country code actually found.
    pub fn parse(kind: IdentifierKind, issuer: &str, raw: &str) -> Result<Self, JunkIdentifier> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(JunkIdentifier::Empty);
        }
        if trimmed.len() > MAX_IDENTIFIER_LEN {
            return Err(JunkIdentifier::TooLong);
        }
        let lowered = trimmed.to_ascii_lowercase();
        if PLACEHOLDERS.contains(&lowered.as_str()) {
            return Err(JunkIdentifier::Placeholder(trimmed.to_owned()));
        }
        if trimmed.bytes().all(|b| b == b'0') {
            return Err(JunkIdentifier::AllZeros);
        }
        if trimmed.chars().any(|c| c.is_control()) {
            return Err(JunkIdentifier::Malformed("control characters"));
        }
        let issuer = issuer.trim();
        match kind {
            IdentifierKind::Phone => normalise_phone(issuer, trimmed),
            IdentifierKind::Email => normalise_email(&lowered),
            _ => {
                if trimmed.chars().any(char::is_whitespace) {
                    return Err(JunkIdentifier::Malformed("whitespace inside the value"));
                }
                Ok(Self {
                    kind,
                    issuer: issuer.to_owned(),
                    value: trimmed.to_owned(),
                })
            }
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.issuer, self.value)
    }
}

/// Test numbers seen in the wild in Chinese retail systems, after E.164 normalisation.
const TEST_PHONES: [&str; 4] = [
    "+8613800138000",
    "+8612345678901",
    "+8613888888888",
    "+8618888888888",
];

fn normalise_phone(default_country: &str, raw: &str) -> Result<Identifier, JunkIdentifier> {
    let mut digits = String::with_capacity(raw.len());
    let mut has_plus = false;
    for (position, c) in raw.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if position == 0 => has_plus = true,
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => {
                return Err(JunkIdentifier::Malformed(
                    "phone has characters other than digits",
                ));
            }
        }
    }
    if digits.bytes().all(|b| b == b'0') {
        return Err(JunkIdentifier::AllZeros);
    }
    let international = if has_plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else if default_country == "86" && digits.len() == 13 && digits.starts_with("861") {
        // A mainland mobile with its country code but no `+`, as CRM exports write them.
        digits
    } else {
        if default_country.is_empty() || !default_country.bytes().all(|b| b.is_ascii_digit()) {
            return Err(JunkIdentifier::Malformed(
                "phone without country code and no default",
            ));
        }
        let national = digits.strip_prefix('0').unwrap_or(&digits);
        format!("{default_country}{national}")
    };
    let country = if let Some(national) = international.strip_prefix("86") {
        // Mainland mobile numbers: 11 digits, `1` then 3 to 9.
        let second = national.as_bytes().get(1).copied().unwrap_or_default();
        if national.len() != 11 || !national.starts_with('1') || !(b'3'..=b'9').contains(&second) {
            return Err(JunkIdentifier::Malformed(
                "not a mainland china mobile number",
            ));
        }
        "86"
    } else {
        if !(8..=15).contains(&international.len()) {
            return Err(JunkIdentifier::Malformed(
                "phone length outside e.164 limits",
            ));
        }
        country_code_of(&international)
    };
    let national = &international[country.len()..];
    if national.bytes().all(|b| b == national.as_bytes()[0]) {
        return Err(JunkIdentifier::TestValue);
    }
    let value = format!("+{international}");
    if TEST_PHONES.contains(&value.as_str()) {
        return Err(JunkIdentifier::TestValue);
    }
    Ok(Identifier {
        kind: IdentifierKind::Phone,
        issuer: country.to_owned(),
        value,
    })
}

/// The calling code prefix of an international number: the few codes Kinfold's markets use,
/// otherwise the first digit (NANP) or first two digits, which is enough to scope the value.
fn country_code_of(international: &str) -> &str {
    const KNOWN: [&str; 12] = [
        "852", "853", "886", "1", "7", "44", "33", "49", "81", "82", "65", "60",
    ];
    KNOWN
        .into_iter()
        .find(|code| international.starts_with(code))
        .map_or(&international[..2], |code| &international[..code.len()])
}

fn normalise_email(lowered: &str) -> Result<Identifier, JunkIdentifier> {
    let Some((local, domain)) = lowered.split_once('@') else {
        return Err(JunkIdentifier::Malformed("email without @"));
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || lowered.chars().any(char::is_whitespace)
    {
        return Err(JunkIdentifier::Malformed("not an email address"));
    }
    if domain == "example.com" || domain == "test.com" {
        return Err(JunkIdentifier::TestValue);
    }
    Ok(Identifier {
        kind: IdentifierKind::Email,
        issuer: String::new(),
        value: lowered.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn phone(raw: &str) -> Result<String, JunkIdentifier> {
        Identifier::parse(IdentifierKind::Phone, "86", raw).map(|id| id.value)
    }

    #[test]
    fn phones_normalise_to_e164() {
        assert_eq!(phone("139 1234 5678").as_deref(), Ok("+8613912345678"));
        assert_eq!(phone("+86 139-1234-5678").as_deref(), Ok("+8613912345678"));
        assert_eq!(phone("008613912345678").as_deref(), Ok("+8613912345678"));
        assert_eq!(phone("8613912345678").as_deref(), Ok("+8613912345678"));
        assert!(matches!(
            phone("12912345678"),
            Err(JunkIdentifier::Malformed(_))
        ));
        assert_eq!(phone("+44 20 7946 0958").as_deref(), Ok("+442079460958"));
        let uk = Identifier::parse(IdentifierKind::Phone, "86", "+442079460958").ok();
        assert_eq!(uk.map(|id| id.issuer).as_deref(), Some("44"));
    }

    #[test]
    fn junk_phones_are_refused() {
        assert_eq!(
            phone("null"),
            Err(JunkIdentifier::Placeholder("null".into()))
        );
        assert_eq!(phone("0"), Err(JunkIdentifier::AllZeros));
        assert_eq!(phone("00000000000"), Err(JunkIdentifier::AllZeros));
        assert_eq!(phone("13800138000"), Err(JunkIdentifier::TestValue));
        assert!(matches!(
            phone("11111111111"),
            Err(JunkIdentifier::Malformed(_))
        ));
        assert_eq!(phone("+44 7777 777777"), Err(JunkIdentifier::TestValue));
        assert!(matches!(
            phone("1391234"),
            Err(JunkIdentifier::Malformed(_))
        ));
        assert!(matches!(
            phone("139abc45678"),
            Err(JunkIdentifier::Malformed(_))
        ));
    }

    #[test]
    fn emails_lower_case() {
        let id = Identifier::parse(IdentifierKind::Email, "", " Li.Na@Example.CN ");
        assert_eq!(id.map(|id| id.value).as_deref(), Ok("li.na@example.cn"));
        assert!(Identifier::parse(IdentifierKind::Email, "", "li.na").is_err());
    }

    #[test]
    fn other_kinds_keep_their_value() {
        let id = Identifier::parse(IdentifierKind::WechatOpenid, "wx123", "oAbC-9_z");
        assert_eq!(id.map(|id| id.value).as_deref(), Ok("oAbC-9_z"));
        assert_eq!(
            Identifier::parse(IdentifierKind::MemberCard, "brand", "undefined"),
            Err(JunkIdentifier::Placeholder("undefined".into()))
        );
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in IdentifierKind::ALL {
            assert_eq!(kind.as_str().parse::<IdentifierKind>(), Ok(kind));
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_is_idempotent(raw in ".{0,40}", kind_index in 0usize..12) {
            let kind = IdentifierKind::ALL[kind_index];
            if let Ok(id) = Identifier::parse(kind, "86", &raw) {
                let again = Identifier::parse(kind, &id.issuer, &id.value);
                prop_assert_eq!(again, Ok(id));
            }
        }
    }
}
