//! `kinfold.v1.ProfileService` over gRPC: profiles by customer id or by any identifier, now or
//! as of an instant, and customers' journals (see `docs/profile.md`).

use crate::fold::{Bought, OrderFacts, Profile, fold};
use crate::rules::ProfileRules;
use crate::stage::{PROFILES_TABLE, StoredCustomer, load_customer, load_customer_folded};
use bytes::Bytes;
use kinfold_core::ports::KvStore;
use kinfold_core::time::{Clock, TimestampMicros};
use kinfold_identity::model::CustomerId;
use kinfold_identity::service::{
    IdentityService, Violations, identifier_proto, invalid_page_token,
};
use kinfold_proto::v1 as pb;
use kinfold_schemas::SchemaRegistry;
use kinfold_schemas::codec::decode_framed_canonical;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// How many merges a look-up by an absorbed customer's id follows at most.
const MAX_REDIRECTS: usize = 64;

/// The profile service.
#[derive(Clone)]
pub struct ProfileService {
    kv: Arc<dyn KvStore>,
    registry: Arc<SchemaRegistry>,
    rules: ProfileRules,
    /// For look-ups by identifier: present when this process holds the identity graph.
    identity: Option<IdentityService>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ProfileService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileService")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

impl ProfileService {
    pub fn new(
        kv: Arc<dyn KvStore>,
        registry: Arc<SchemaRegistry>,
        rules: ProfileRules,
        identity: Option<IdentityService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            kv,
            registry,
            rules,
            identity,
            clock,
        }
    }

    /// The tonic service, for a `tonic::transport::Server`.
    pub fn into_server(self) -> pb::profile_service_server::ProfileServiceServer<Self> {
        pb::profile_service_server::ProfileServiceServer::new(self)
    }

    /// The customer `customer` is part of now (following merges), with its rows: its journal
    /// too when `journal` is set, else its folded state only.
    async fn current(
        &self,
        customer: CustomerId,
        journal: bool,
    ) -> Result<(CustomerId, StoredCustomer), Status> {
        let mut current = customer;
        for _ in 0..MAX_REDIRECTS {
            let (kv, registry, id) = (self.kv.as_ref(), &self.registry, current.to_string());
            let stored = if journal {
                load_customer(kv, registry, &id).await
            } else {
                load_customer_folded(kv, registry, &id).await
            }
            .map_err(internal)?;
            match stored.redirect {
                Some(into) => current = into,
                None => return Ok((current, stored)),
            }
        }
        Err(Status::internal(format!(
            "{customer} was merged more than {MAX_REDIRECTS} times over"
        )))
    }
}

fn order_facts_proto(facts: OrderFacts) -> pb::OrderFacts {
    pb::OrderFacts {
        orders: facts.orders,
        returns: facts.returns,
        coupon_orders: facts.coupon_orders,
        first_purchase_micros: facts.first_purchase,
        last_purchase_micros: facts.last_purchase,
        money: facts
            .money
            .into_iter()
            .map(|(currency, spend)| {
                let net_minor = spend.net_minor();
                (
                    currency,
                    pb::Spend {
                        orders: spend.orders,
                        gross_minor: spend.gross_minor,
                        returned_minor: spend.returned_minor,
                        net_minor,
                    },
                )
            })
            .collect(),
    }
}

fn bought_proto(bought: Vec<(String, Bought)>) -> Vec<pb::Bought> {
    bought
        .into_iter()
        .map(|(name, bought)| pb::Bought {
            name,
            units: bought.units,
            spend_minor: bought.spend_minor,
        })
        .collect()
}

/// `profile` as the API gives it (its strings moved, not copied).
pub fn profile_proto(
    customer: CustomerId,
    asked: CustomerId,
    at: TimestampMicros,
    profile: Profile,
) -> pb::Profile {
    pb::Profile {
        customer_id: customer.to_string(),
        asked_customer_id: if asked == customer {
            String::new()
        } else {
            asked.to_string()
        },
        as_of_micros: at,
        events: profile.events,
        identifiers: profile
            .identifiers
            .into_iter()
            .map(|identifier| pb::Identifier {
                kind: identifier.kind.as_str().to_owned(),
                issuer: identifier.issuer,
                value: identifier.value,
            })
            .collect(),
        traits: profile
            .traits
            .into_iter()
            .map(|(name, value)| {
                (
                    name,
                    pb::Trait {
                        value: value.value,
                        set_at_micros: value.at,
                    },
                )
            })
            .collect(),
        consent: profile
            .consent
            .into_iter()
            .map(|(purpose, consent)| {
                (
                    purpose,
                    pb::Consent {
                        granted: consent.granted,
                        channel: consent.channel.unwrap_or_default(),
                        at_micros: consent.at,
                    },
                )
            })
            .collect(),
        overall: Some(order_facts_proto(profile.overall)),
        channels: profile
            .channels
            .into_iter()
            .map(|(channel, facts)| (channel, order_facts_proto(facts)))
            .collect(),
        stores: profile.stores.into_iter().collect(),
        top_skus: bought_proto(profile.top_skus),
        top_categories: bought_proto(profile.top_categories),
        primary_currency: profile.primary_currency.unwrap_or_default(),
        average_order_value_minor: profile.average_order_value_minor,
        mean_purchase_interval_days: profile.mean_purchase_interval_days,
        coupon_use_rate: profile.coupon_use_rate,
        rfm: profile.rfm.map(|rfm| pb::Rfm {
            recency_days: rfm.recency_days,
            frequency: rfm.frequency,
            monetary_minor: rfm.monetary_minor,
            r_score: u32::from(rfm.r),
            f_score: u32::from(rfm.f),
            m_score: u32::from(rfm.m),
        }),
        lifetime_value_minor: profile.lifetime_value_minor,
        follows: profile
            .follows
            .into_iter()
            .map(|(app, follow)| {
                (
                    app,
                    pb::Follow {
                        following: follow.following,
                        at_micros: follow.at,
                        scene: follow.scene.unwrap_or_default(),
                    },
                )
            })
            .collect(),
        guides: profile
            .guides
            .into_iter()
            .map(|guide| pb::Guide {
                corp_id: guide.corp_id,
                guide_id: guide.guide_id,
                since_micros: guide.since,
            })
            .collect(),
        coupons_redeemed: profile.coupons_redeemed,
        views: profile.views,
    }
}

/// A journal page token: the hex of the next row's clustering key.
fn journal_page_token(token: &str) -> Result<Bytes, Status> {
    if token.is_empty() {
        return Ok(Bytes::from_static(b"j"));
    }
    if !token.len().is_multiple_of(2)
        || !token.starts_with("6a")
        || !token.bytes().all(|byte| byte.is_ascii_hexdigit())
    {
        return Err(invalid_page_token());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&token[at..at + 2], 16))
        .collect();
    bytes.map(Bytes::from).map_err(|_| invalid_page_token())
}

#[tonic::async_trait]
impl pb::profile_service_server::ProfileService for ProfileService {
    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let asked = match &request.key {
            None => {
                violations.add("key", "give a customer_id or an identifier");
                None
            }
            Some(pb::get_profile_request::Key::CustomerId(id)) => violations
                .customer_id("customer_id", id)
                .map(|customer| (customer, None)),
            Some(pb::get_profile_request::Key::Identifier(identifier)) => violations
                .identifier("identifier", identifier)
                .map(|identifier| (CustomerId(uuid::Uuid::nil()), Some(identifier))),
        };
        if let Some(at) = request.as_of_micros
            && at < 0
        {
            violations.add("as_of_micros", "before 1970");
        }
        violations.check()?;
        let (mut asked, identifier) = asked.expect("checked");
        if let Some(identifier) = identifier {
            let identity = self.identity.as_ref().ok_or_else(|| {
                Status::unavailable(
                    "this process does not hold the identity graph: ask by customer_id, or ask the process that runs identity",
                )
            })?;
            asked = identity
                .holder_of(&identifier)
                .await?
                .ok_or_else(|| Status::not_found(format!("no customer holds {identifier}")))?;
        }
        // The journal is read only to fold it up to an instant.
        let (customer, stored) = self.current(asked, request.as_of_micros.is_some()).await?;
        if stored.erased || stored.state.events == 0 {
            return Err(Status::not_found(format!("no profile of {asked}")));
        }
        let (at, profile) = match request.as_of_micros {
            Some(at) => (at, fold(stored.journal.until(at)).profile(&self.rules, at)),
            None => {
                let now = self.clock.now_micros();
                (now, stored.state.into_profile(&self.rules, now))
            }
        };
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(profile_proto(customer, asked, at, profile)),
        }))
    }

    async fn list_journal(
        &self,
        request: Request<pb::ListJournalRequest>,
    ) -> Result<Response<pb::ListJournalResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let customer = violations.customer_id("customer_id", &request.customer_id);
        let size = violations.page_size("page_size", request.page_size);
        violations.check()?;
        let customer = customer.expect("checked");
        let from = journal_page_token(&request.page_token)?;
        let rows = self
            .kv
            .scan_partition(
                PROFILES_TABLE,
                customer.to_string().as_bytes(),
                &from,
                size + 1,
            )
            .await
            .map_err(internal)?;
        let mut rows: Vec<_> = rows
            .into_iter()
            .take_while(|row| row.clustering_key.first() == Some(&b'j'))
            .collect();
        let next_page_token = if rows.len() > size {
            let next = rows.pop().expect("more than a page");
            next.clustering_key
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        } else {
            String::new()
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let event = decode_framed_canonical(&row.value, &self.registry).map_err(internal)?;
            events.push(pb::JournalEvent {
                event_id: event.event_id.to_string(),
                event_type: event.event_type.clone(),
                event_time_micros: event.event_time,
                receive_time_micros: event.receive_time,
                origin: event.origin.clone(),
                identifiers: event.identifiers.iter().map(identifier_proto).collect(),
                body_json: serde_json::to_string(&event.body).map_err(internal)?,
            });
        }
        Ok(Response::new(pb::ListJournalResponse {
            events,
            next_page_token,
        }))
    }
}
