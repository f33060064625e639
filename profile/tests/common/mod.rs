//! One customer's random events, for the profile tests.

#![allow(dead_code)]

use bytes::Bytes;
use kinfold_core::event::{
    Buyer, EcomOrder, EcomRefund, EventBody, MembershipEvent, MembershipEventType, OrderItem,
    OrderStatus, Platform, PosLine, PosTransaction, PosTransactionKind, Tender, TenderKind,
    WechatEvent, WechatEventType,
};
use kinfold_core::ports::{EventLog, KvStore, OutgoingRecord};
use kinfold_core::{CanonicalEvent, EventId};
use kinfold_identity::model::CustomerId;
use kinfold_identity::records::{ResolvedMarker, resolved_record};
use kinfold_profile::cache::CustomerCache;
use kinfold_profile::stage::{MAX_IN_FLIGHT, ProfileProcessor, ProfileTally, load_customer};
use kinfold_schemas::catalog::CANONICAL_SUBJECT;
use kinfold_schemas::codec::Codecs;
use kinfold_schemas::wire::frame;
use kinfold_schemas::{Catalog, SchemaRegistry};
use kinfold_storage::EmbeddedDatabase;
use rand::Rng;
use rand::rngs::StdRng;
use std::sync::Arc;

/// 2026-01-01.
pub const START: i64 = 1_767_225_600_000_000;

pub fn event(id: u128, time: i64, body: EventBody) -> CanonicalEvent {
    CanonicalEvent {
        event_id: EventId(uuid::Uuid::from_u128(id)),
        event_type: "test".to_owned(),
        event_time: time,
        receive_time: time,
        origin: "test".to_owned(),
        identifiers: Vec::new(),
        body,
    }
}

const SKUS: [(&str, &str); 4] = [
    ("sku-a", "tea"),
    ("sku-b", "tea"),
    ("sku-c", "cups"),
    ("sku-d", "snacks"),
];

fn pos(rng: &mut StdRng, kind: PosTransactionKind, serial: u32) -> PosTransaction {
    let (sku, category) = SKUS[rng.random_range(0..SKUS.len())];
    let quantity = rng.random_range(1..4);
    let unit_price_minor = rng.random_range(100..5_000);
    let discount_minor = if rng.random_bool(0.3) { 50 } else { 0 };
    let total = quantity * unit_price_minor - discount_minor;
    let coupon = kind == PosTransactionKind::Sale && rng.random_bool(0.3);
    PosTransaction {
        kind,
        brand: "b".to_owned(),
        store_id: format!("s{}", rng.random_range(1..4)),
        till_id: "t1".to_owned(),
        serial: serial.to_string(),
        business_day: "2026-01-01".to_owned(),
        occurred_at_local: "2026-01-01T10:00:00".to_owned(),
        time_zone: None,
        currency: if rng.random_bool(0.1) { "USD" } else { "CNY" }.to_owned(),
        lines: vec![PosLine {
            sku: sku.to_owned(),
            description: None,
            category: Some(category.to_owned()),
            quantity,
            unit_price_minor,
            discount_minor,
        }],
        tenders: vec![Tender {
            kind: if coupon {
                TenderKind::Coupon
            } else {
                TenderKind::WechatPay
            },
            amount_minor: total,
            reference: None,
        }],
        total_minor: total,
        member_card: None,
        phone: None,
        cashier_id: None,
        guide_id: rng
            .random_bool(0.3)
            .then(|| format!("g{}", rng.random_range(1..3))),
        original_serial: None,
    }
}

fn item(rng: &mut StdRng) -> OrderItem {
    let (sku, category) = SKUS[rng.random_range(0..SKUS.len())];
    OrderItem {
        sku: sku.to_owned(),
        title: None,
        category: Some(category.to_owned()),
        quantity: rng.random_range(1..3),
        unit_price_minor: rng.random_range(100..3_000),
        discount_minor: 0,
    }
}

fn membership(event_type: MembershipEventType, event_ref: u32) -> MembershipEvent {
    MembershipEvent {
        event_type,
        brand: "b".to_owned(),
        member_card: "M1".to_owned(),
        event_ref: event_ref.to_string(),
        occurred_at: 0,
        phone: None,
        email: None,
        name: None,
        gender: None,
        birthday: None,
        home_store: None,
        consent_purpose: None,
        consent_channel: None,
        points_delta: None,
        points_expire_at: None,
        coupon_id: None,
        coupon_campaign: None,
        coupon_expires_at: None,
        amount_minor: None,
        currency: None,
        tier: None,
        reason: None,
        store_id: None,
    }
}

fn wechat(event_type: WechatEventType, app_id: &str) -> WechatEvent {
    WechatEvent {
        event_type,
        app_id: app_id.to_owned(),
        openid: None,
        unionid: None,
        msg_id: None,
        occurred_at: 0,
        scene: None,
        phone: None,
        phone_consent: None,
        latitude: None,
        longitude: None,
        coordinate_system: None,
        corp_id: None,
        external_userid: None,
        guide_id: None,
        page: None,
        sku: None,
    }
}

/// One customer's events, distinct ids; times often equal, so that the event id decides.
pub fn events(rng: &mut StdRng) -> Vec<CanonicalEvent> {
    let count = rng.random_range(0..30);
    let mut events = Vec::with_capacity(count);
    let mut next_id = rng.random_range(0..1_000_000u128) << 32;
    for serial in 0..count as u32 {
        next_id += 1 + rng.random_range(0..3);
        // Hours apart over a year, with ties.
        let time = START + rng.random_range(0..24 * 365) * 3_600_000_000;
        let body = match rng.random_range(0..11) {
            0..=2 => EventBody::PosTransaction(pos(rng, PosTransactionKind::Sale, serial)),
            3 => EventBody::PosTransaction(pos(rng, PosTransactionKind::Return, serial)),
            4 | 5 => {
                let status = [
                    OrderStatus::Created,
                    OrderStatus::Paid,
                    OrderStatus::Shipped,
                    OrderStatus::Completed,
                    OrderStatus::Cancelled,
                ][rng.random_range(0..5)];
                let total = rng.random_range(500..20_000);
                EventBody::EcomOrder(EcomOrder {
                    platform: if rng.random_bool(0.5) {
                        Platform::Tmall
                    } else {
                        Platform::MiniProgram
                    },
                    brand: "b".to_owned(),
                    shop_id: "shop".to_owned(),
                    // Few orders, so that versions of one order meet.
                    order_id: format!("o{}", rng.random_range(0..4)),
                    status,
                    source_version: rng.random_range(1..4),
                    occurred_at: time,
                    buyer: Buyer::default(),
                    currency: "CNY".to_owned(),
                    items: vec![item(rng)],
                    coupons: if rng.random_bool(0.3) {
                        vec!["C1".to_owned()]
                    } else {
                        Vec::new()
                    },
                    total_minor: total,
                    paid_minor: if rng.random_bool(0.5) { total - 100 } else { 0 },
                })
            }
            6 => EventBody::EcomRefund(EcomRefund {
                platform: Platform::Tmall,
                brand: "b".to_owned(),
                shop_id: "shop".to_owned(),
                order_id: "o1".to_owned(),
                refund_id: format!("r{serial}"),
                occurred_at: time,
                buyer: Buyer::default(),
                currency: "CNY".to_owned(),
                amount_minor: rng.random_range(100..2_000),
                items: vec![item(rng)],
                reason: None,
            }),
            7 => {
                let mut update = membership(MembershipEventType::ProfileUpdated, serial);
                update.name = rng
                    .random_bool(0.7)
                    .then(|| ["Li", "Wang", "Zhang", " "][rng.random_range(0..4)].to_owned());
                update.home_store = rng
                    .random_bool(0.5)
                    .then(|| format!("s{}", rng.random_range(1..4)));
                EventBody::Membership(update)
            }
            8 => {
                let granted = rng.random_bool(0.5);
                let mut consent = membership(
                    if granted {
                        MembershipEventType::ConsentGranted
                    } else {
                        MembershipEventType::ConsentWithdrawn
                    },
                    serial,
                );
                consent.consent_purpose =
                    Some(["marketing_sms", "profiling"][rng.random_range(0..2)].to_owned());
                EventBody::Membership(consent)
            }
            9 => {
                let added = rng.random_bool(0.6);
                let mut event = wechat(
                    if added {
                        WechatEventType::WecomContactAdded
                    } else {
                        WechatEventType::WecomContactRemoved
                    },
                    "wwagent",
                );
                event.corp_id = Some(["corp1", "corp2"][rng.random_range(0..2)].to_owned());
                event.guide_id = Some(format!("g{}", rng.random_range(1..3)));
                EventBody::Wechat(event)
            }
            _ => {
                let follow = rng.random_bool(0.6);
                let mut event = wechat(
                    if follow {
                        WechatEventType::Follow
                    } else {
                        WechatEventType::Unfollow
                    },
                    ["wxa", "wxb"][rng.random_range(0..2)],
                );
                event.scene = follow.then(|| format!("scene{}", rng.random_range(0..3)));
                EventBody::Wechat(event)
            }
        };
        events.push(event(next_id, time, body));
    }
    events
}

pub const TOPIC: &str = "events.resolved";

/// The embedded log and store with `events.resolved`, and the profile stage over them.
pub struct Fixture {
    pub log: Arc<dyn EventLog>,
    pub kv: Arc<dyn KvStore>,
    pub registry: Arc<SchemaRegistry>,
    schema_id: u32,
    codecs: Codecs,
    /// The customer cache the stage keeps, if it keeps one.
    pub cache: Option<CustomerCache>,
}

impl Fixture {
    pub async fn new(database: &EmbeddedDatabase) -> Self {
        let log: Arc<dyn EventLog> = Arc::new(database.log());
        let kv: Arc<dyn KvStore> = Arc::new(database.kv());
        let registry = Arc::new(SchemaRegistry::open(kv.clone()).await.expect("registry"));
        registry
            .register_catalog(&Catalog::embedded())
            .await
            .expect("catalog");
        // The current canonical schema: registering the catalog made it the latest.
        let schema_id = registry
            .latest_id(CANONICAL_SUBJECT)
            .expect("canonical schema");
        log.ensure_topic(TOPIC, 4).await.expect("topic");
        Self {
            log,
            kv,
            registry,
            schema_id,
            codecs: Codecs::new(),
            cache: None,
        }
    }

    /// The same, the stage keeping its customers in a cache (as `kinfold serve` does on the
    /// embedded log); [`Self::state`] then checks the cache against the store.
    pub async fn cached(database: &EmbeddedDatabase) -> Self {
        let mut fixture = Self::new(database).await;
        fixture.cache = Some(CustomerCache::new(10_000));
        fixture
    }

    pub fn frame(&self, event: &CanonicalEvent) -> Bytes {
        Bytes::from(frame(
            self.schema_id,
            &self.codecs.encode_canonical(event).expect("encodes"),
        ))
    }

    pub async fn append(&self, records: Vec<OutgoingRecord>) {
        self.log.append(TOPIC, records).await.expect("append");
    }

    pub async fn send(&self, customer: CustomerId, events: &[CanonicalEvent]) {
        let records = events
            .iter()
            .map(|event| resolved_record(&self.frame(event), customer, 0))
            .collect();
        self.append(records).await;
    }

    pub async fn mark(&self, customer: CustomerId, markers: &[ResolvedMarker]) {
        let records = markers
            .iter()
            .map(|marker| marker.outgoing(customer, 0))
            .collect();
        self.append(records).await;
    }

    /// Runs the stage (group `group`) until it has taken in everything, transfers included.
    pub async fn run(&self, group: &str) -> ProfileTally {
        let mut processor = ProfileProcessor::new(
            self.log.clone(),
            self.kv.clone(),
            self.registry.clone(),
            TOPIC,
        );
        if let Some(cache) = &self.cache {
            processor = processor.with_cache(cache.clone());
        }
        kinfold_tests::run_stage_until_caught_up(
            self.log.clone(),
            processor,
            group,
            TOPIC,
            MAX_IN_FLIGHT,
            7,
        )
        .await
        .tally
    }

    /// The customer's rows in the store; the cache, where it holds them, must hold the same.
    pub async fn state(&self, customer: CustomerId) -> kinfold_profile::stage::StoredCustomer {
        let stored = load_customer(self.kv.as_ref(), &self.registry, &customer.to_string())
            .await
            .expect("loads");
        if let Some(cached) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.get(&customer.to_string()))
        {
            assert_eq!(*cached, stored, "the cache holds {customer} as stored");
        }
        stored
    }
}
