//! The canonical event: one envelope that every source maps into.
//!
//! The family records (`PosTransaction`, `EcomOrder`, `EcomRefund`, `WechatEvent`,
//! `MembershipEvent`) are both what sources send (in Avro or JSON) and the body of the canonical
//! event. The ingest stage normalises them (identifiers typed and cleaned, local times resolved)
//! and wraps them with an [`EventId`] derived from the source's natural key.

use crate::identifier::Identifier;
use crate::time::TimestampMicros;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The namespace of Kinfold's name-based (v5) event ids. Changing it changes every id.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b69_6e66_6f6c_6400_8000_0000_0000_0001);

/// A deterministic event id: UUID v5 of the family and the source's natural key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub uuid::Uuid);

impl EventId {
    /// The id of the event that `family` identifies by `natural_key`.
    pub fn from_natural_key(family: EventFamily, natural_key: &str) -> Self {
        let name = format!("{}/{}", family.as_str(), natural_key);
        Self(uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()))
    }

    /// The 16 bytes of the id, for keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for EventId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The families of source events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFamily {
    PosTransaction,
    EcomOrder,
    EcomRefund,
    Wechat,
    Membership,
}

impl EventFamily {
    /// Every family.
    pub const ALL: [EventFamily; 5] = [
        Self::PosTransaction,
        Self::EcomOrder,
        Self::EcomRefund,
        Self::Wechat,
        Self::Membership,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PosTransaction => "pos_transaction",
            Self::EcomOrder => "ecom_order",
            Self::EcomRefund => "ecom_refund",
            Self::Wechat => "wechat",
            Self::Membership => "membership",
        }
    }
}

impl fmt::Display for EventFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canonical event, as stored in `events.canonical`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalEvent {
    /// Deterministic id from the source's natural key.
    pub event_id: EventId,
    /// A dotted type such as `pos.sale`, `ecom.order.paid`, `wechat.follow`.
    pub event_type: String,
    /// When it happened, in UTC microseconds.
    pub event_time: TimestampMicros,
    /// When Kinfold received it, in UTC microseconds.
    pub receive_time: TimestampMicros,
    /// Where it came in: `http`, `import:online-retail`, `kafka:pos.transactions/3@1234`.
    pub origin: String,
    /// Normalised identifiers found in the event; junk values are already dropped.
    pub identifiers: Vec<Identifier>,
    /// The family record, normalised.
    pub body: EventBody,
}

/// The family record of a canonical event. Serialised as an Avro union of the family records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    #[serde(rename = "kinfold.pos.PosTransaction")]
    PosTransaction(PosTransaction),
    #[serde(rename = "kinfold.ecom.EcomOrder")]
    EcomOrder(EcomOrder),
    #[serde(rename = "kinfold.ecom.EcomRefund")]
    EcomRefund(EcomRefund),
    #[serde(rename = "kinfold.wechat.WechatEvent")]
    Wechat(WechatEvent),
    #[serde(rename = "kinfold.membership.MembershipEvent")]
    Membership(MembershipEvent),
}

impl EventBody {
    /// The family of this record.
    pub fn family(&self) -> EventFamily {
        match self {
            Self::PosTransaction(_) => EventFamily::PosTransaction,
            Self::EcomOrder(_) => EventFamily::EcomOrder,
            Self::EcomRefund(_) => EventFamily::EcomRefund,
            Self::Wechat(_) => EventFamily::Wechat,
            Self::Membership(_) => EventFamily::Membership,
        }
    }

    /// The natural key of the source event; the event id is derived from it. Parts are
    /// trimmed and joined with `|`, a `|` or `\\` inside a part escaped, so that no two
    /// different keys join to the same text.
    pub fn natural_key(&self) -> String {
        match self {
            Self::PosTransaction(t) => join_key(&[
                &t.brand,
                &t.store_id,
                &t.till_id,
                &t.business_day,
                &t.serial,
            ]),
            Self::EcomOrder(o) => join_key(&[
                o.platform.as_str(),
                &o.shop_id,
                &o.order_id,
                o.status.as_str(),
                &o.source_version.to_string(),
            ]),
            Self::EcomRefund(r) => join_key(&[r.platform.as_str(), &r.shop_id, &r.refund_id]),
            Self::Wechat(w) => match &w.msg_id {
                Some(msg_id) => join_key(&[&w.app_id, "msg", msg_id]),
                // Without WeChat's message id, everything that tells two events apart; views
                // of different pages or products in the same second stay distinct.
                None => join_key(&[
                    &w.app_id,
                    w.openid.as_deref().unwrap_or_default(),
                    w.external_userid.as_deref().unwrap_or_default(),
                    w.event_type.as_str(),
                    &w.occurred_at.to_string(),
                    w.scene.as_deref().unwrap_or_default(),
                    w.page.as_deref().unwrap_or_default(),
                    w.sku.as_deref().unwrap_or_default(),
                    w.guide_id.as_deref().unwrap_or_default(),
                ]),
            },
            Self::Membership(m) => join_key(&[&m.brand, &m.member_card, &m.event_ref]),
        }
    }

    /// The event id of this record.
    pub fn event_id(&self) -> EventId {
        EventId::from_natural_key(self.family(), &self.natural_key())
    }

    /// The dotted event type.
    pub fn event_type(&self) -> String {
        match self {
            Self::PosTransaction(t) => match t.kind {
                PosTransactionKind::Sale => "pos.sale".to_owned(),
                PosTransactionKind::Return => "pos.return".to_owned(),
            },
            Self::EcomOrder(o) => format!("ecom.order.{}", o.status.as_str()),
            Self::EcomRefund(_) => "ecom.refund.succeeded".to_owned(),
            Self::Wechat(w) => format!("wechat.{}", w.event_type.as_str()),
            Self::Membership(m) => format!("membership.{}", m.event_type.as_str()),
        }
    }
}

/// Joins trimmed key parts with `|`, escaping `\\` and `|` inside parts.
fn join_key(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            key.push('|');
        }
        for c in part.trim().chars() {
            if c == '|' || c == '\\' {
                key.push('\\');
            }
            key.push(c);
        }
    }
    key
}

macro_rules! avro_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The lower-case name used in event types and metrics.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
    };
}

avro_enum!(
    /// A till transaction is a sale or a return.
    PosTransactionKind { Sale => "sale", Return => "return" }
);
avro_enum!(
    /// How a till transaction was paid.
    TenderKind {
        Cash => "cash", WechatPay => "wechat_pay", Alipay => "alipay", BankCard => "bank_card",
        MemberCard => "member_card", StoredValue => "stored_value", Coupon => "coupon", Other => "other",
    }
);
avro_enum!(
    /// Where an online order was placed.
    Platform {
        MiniProgram => "mini_program", Youzan => "youzan", Taobao => "taobao", Tmall => "tmall",
        Jd => "jd", Shopify => "shopify", Other => "other",
    }
);
avro_enum!(
    /// The order lifecycle.
    OrderStatus {
        Created => "created", Paid => "paid", Shipped => "shipped", Completed => "completed",
        Cancelled => "cancelled",
    }
);
avro_enum!(
    /// What happened on WeChat.
    WechatEventType {
        Follow => "follow", Unfollow => "unfollow", MiniProgramLogin => "mini_program_login",
        PhoneBound => "phone_bound", Location => "location",
        WecomContactAdded => "wecom_contact_added", WecomContactRemoved => "wecom_contact_removed",
        View => "view",
    }
);
avro_enum!(
    /// A coordinate reference system: GPS (WGS-84) or China's obfuscated GCJ-02.
    CoordinateSystem { Wgs84 => "wgs84", Gcj02 => "gcj02" }
);
avro_enum!(
    /// What happened to a membership.
    MembershipEventType {
        Registered => "registered", ProfileUpdated => "profile_updated",
        ConsentGranted => "consent_granted", ConsentWithdrawn => "consent_withdrawn",
        PointsAdjusted => "points_adjusted", CouponIssued => "coupon_issued",
        CouponRedeemed => "coupon_redeemed", CouponExpired => "coupon_expired",
        StoredValueToppedUp => "stored_value_topped_up", StoredValueSpent => "stored_value_spent",
        TierChanged => "tier_changed",
    }
);

/// A POS sale or return, keyed by brand, store, till, business day and serial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosTransaction {
    pub kind: PosTransactionKind,
    /// The brand: issuer of member cards.
    pub brand: String,
    pub store_id: String,
    pub till_id: String,
    pub serial: String,
    /// The store's business day, `YYYY-MM-DD`.
    pub business_day: String,
    /// Local time at the till, ISO 8601, often without an offset.
    pub occurred_at_local: String,
    /// IANA time zone of the store; `Asia/Shanghai` when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
    pub currency: String,
    pub lines: Vec<PosLine>,
    #[serde(default)]
    pub tenders: Vec<Tender>,
    /// The amount paid (sale) or refunded (return), minor units, not negative.
    pub total_minor: i64,
    #[serde(default)]
    pub member_card: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub cashier_id: Option<String>,
    #[serde(default)]
    pub guide_id: Option<String>,
    /// For a return: the serial of the sale it returns, when known.
    #[serde(default)]
    pub original_serial: Option<String>,
}

/// A line of a till transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosLine {
    pub sku: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// Units, positive for sales and returns alike; the transaction kind gives the direction.
    pub quantity: i64,
    pub unit_price_minor: i64,
    #[serde(default)]
    pub discount_minor: i64,
}

/// A payment of a till transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tender {
    pub kind: TenderKind,
    pub amount_minor: i64,
    #[serde(default)]
    pub reference: Option<String>,
}

/// The identifiers an online platform knows a buyer by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Buyer {
    /// The platform's buyer id (youzan open id, taobao ouid, tmall omid, jd open id, shopify id).
    #[serde(default)]
    pub platform_buyer_id: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub wechat_app_id: Option<String>,
    #[serde(default)]
    pub wechat_openid: Option<String>,
    #[serde(default)]
    pub wechat_unionid: Option<String>,
    #[serde(default)]
    pub member_card: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
}

/// An item of an online order or refund.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    pub quantity: i64,
    pub unit_price_minor: i64,
    #[serde(default)]
    pub discount_minor: i64,
}

/// A step of an online order's lifecycle. A higher `source_version` wins for the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcomOrder {
    pub platform: Platform,
    /// The brand the shop belongs to: issuer of member cards.
    pub brand: String,
    pub shop_id: String,
    pub order_id: String,
    pub status: OrderStatus,
    pub source_version: i64,
    pub occurred_at: TimestampMicros,
    pub buyer: Buyer,
    pub currency: String,
    pub items: Vec<OrderItem>,
    #[serde(default)]
    pub coupons: Vec<String>,
    pub total_minor: i64,
    #[serde(default)]
    pub paid_minor: i64,
}

/// A refund that succeeded on an online platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcomRefund {
    pub platform: Platform,
    pub brand: String,
    pub shop_id: String,
    pub order_id: String,
    pub refund_id: String,
    pub occurred_at: TimestampMicros,
    pub buyer: Buyer,
    pub currency: String,
    pub amount_minor: i64,
    #[serde(default)]
    pub items: Vec<OrderItem>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A WeChat official account, mini program or WeCom event. Fields beyond the common ones are
/// set according to `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WechatEvent {
    pub event_type: WechatEventType,
    /// The official account, mini program or WeCom agent the event came from.
    pub app_id: String,
    #[serde(default)]
    pub openid: Option<String>,
    #[serde(default)]
    pub unionid: Option<String>,
    /// WeChat's message id, when the callback has one.
    #[serde(default)]
    pub msg_id: Option<String>,
    pub occurred_at: TimestampMicros,
    /// Follow: the QR scene (a store or a campaign).
    #[serde(default)]
    pub scene: Option<String>,
    /// Phone bound: the number and whether the customer consented to its use.
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub phone_consent: Option<bool>,
    /// Location.
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    #[serde(default)]
    pub coordinate_system: Option<CoordinateSystem>,
    /// WeCom contact added or removed: the corp, the customer as the corp sees them, the guide.
    #[serde(default)]
    pub corp_id: Option<String>,
    #[serde(default)]
    pub external_userid: Option<String>,
    #[serde(default)]
    pub guide_id: Option<String>,
    /// View: the page and the product viewed.
    #[serde(default)]
    pub page: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
}

/// A membership event from the brand's CRM. Fields beyond the common ones are set according
/// to `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipEvent {
    pub event_type: MembershipEventType,
    pub brand: String,
    pub member_card: String,
    /// The CRM's id of this change; with brand and card it is the natural key.
    pub event_ref: String,
    pub occurred_at: TimestampMicros,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub gender: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub birthday: Option<String>,
    #[serde(default)]
    pub home_store: Option<String>,
    /// Consent granted or withdrawn: the purpose (`marketing_sms`, `profiling`, ...) and channel.
    #[serde(default)]
    pub consent_purpose: Option<String>,
    #[serde(default)]
    pub consent_channel: Option<String>,
    /// Points adjusted: signed delta and, for a grant, when the lot expires.
    #[serde(default)]
    pub points_delta: Option<i64>,
    #[serde(default)]
    pub points_expire_at: Option<TimestampMicros>,
    #[serde(default)]
    pub coupon_id: Option<String>,
    #[serde(default)]
    pub coupon_campaign: Option<String>,
    #[serde(default)]
    pub coupon_expires_at: Option<TimestampMicros>,
    /// Stored value topped up or spent.
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    /// Tier changed by hand.
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub store_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_depend_on_the_natural_key_only() {
        let a = EventId::from_natural_key(EventFamily::PosTransaction, "b|s1|t1|2026-11-20|42");
        let b = EventId::from_natural_key(EventFamily::PosTransaction, "b|s1|t1|2026-11-20|42");
        let c = EventId::from_natural_key(EventFamily::PosTransaction, "b|s1|t1|2026-11-20|43");
        let d = EventId::from_natural_key(EventFamily::Membership, "b|s1|t1|2026-11-20|42");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(a.0.get_version_num(), 5);
    }

    #[test]
    fn key_parts_cannot_run_into_each_other() {
        assert_ne!(join_key(&["A|B", "C"]), join_key(&["A", "B|C"]));
        assert_ne!(join_key(&["A\\", "|C"]), join_key(&["A\\|", "C"]));
        assert_eq!(join_key(&[" S1 ", "T1"]), join_key(&["S1", "T1"]));
        assert_eq!(join_key(&["a", "b"]), "a|b");
    }

    #[test]
    fn event_id_text_round_trips() {
        let id = EventId::from_natural_key(EventFamily::Wechat, "wx|msg|1");
        assert_eq!(id.to_string().parse::<EventId>().ok(), Some(id));
    }
}
