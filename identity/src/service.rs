//! `kinfold.v1.IdentityService` over gRPC (see `proto/kinfold/v1/identity.proto`).
//!
//! Reads answer from the graph the resolve part holds in this process ([`SharedGraph`]);
//! `ListChanges` reads the per-customer changes table, so it answers wherever the key-value
//! store is shared. Decisions by hand (merge, split, erase, review decisions) are checked
//! against the graph, appended to `identity.inputs` so that they take their place in the
//! graph's one input order (and a replay makes them again), and answered once the resolve part
//! has applied them and their outputs are durable, with the changes they made.

use crate::model::{Cause, Change, CustomerId, GraphError, IdentityGraph, Input, Rules};
use crate::records::InputRecord;
use crate::stage::{CHANGES_TABLE, IdentityTopics, ResolveProcessor, SharedGraph, change_key};
use bytes::Bytes;
use kinfold_core::ports::{EventLog, KvStore};
use kinfold_core::stage::StageStatus;
use kinfold_core::{Identifier, IdentifierKind};
use kinfold_proto::v1 as pb;
use kinfold_proto::v1::identity_service_server::IdentityService as IdentityApi;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The most items a page holds, and how many when the caller does not say.
pub const MAX_PAGE_SIZE: u32 = 1_000;
const DEFAULT_PAGE_SIZE: u32 = 100;
/// The longest reason a decision may carry, in bytes.
pub const MAX_REASON_LEN: usize = 1_024;

/// The identity service.
#[derive(Debug, Clone)]
pub struct IdentityService {
    processor: Arc<ResolveProcessor>,
    graph: Arc<SharedGraph>,
    /// The resolve part's status: reads are answered only while it owns `identity.inputs`.
    status: Arc<StageStatus>,
    log: Arc<dyn EventLog>,
    kv: Arc<dyn KvStore>,
    topics: IdentityTopics,
    /// How long a decision waits to be applied before the call gives up (the decision stays in
    /// `identity.inputs` and is applied all the same).
    decision_timeout: Duration,
}

impl IdentityService {
    /// The service over the graph `processor` keeps, while the stage whose `status` is given
    /// owns `identity.inputs`.
    pub fn new(
        processor: Arc<ResolveProcessor>,
        status: Arc<StageStatus>,
        log: Arc<dyn EventLog>,
        kv: Arc<dyn KvStore>,
        topics: IdentityTopics,
    ) -> Self {
        Self {
            graph: processor.shared(),
            processor,
            status,
            log,
            kv,
            topics,
            decision_timeout: Duration::from_secs(30),
        }
    }

    /// The customer that holds `identifier` now, or says why the graph cannot be read here.
    pub async fn holder_of(&self, identifier: &Identifier) -> Result<Option<CustomerId>, Status> {
        self.read(|graph| graph.holder(identifier)).await
    }

    /// The tonic service, for a `tonic::transport::Server`.
    pub fn into_server(self) -> pb::identity_service_server::IdentityServiceServer<Self> {
        pb::identity_service_server::IdentityServiceServer::new(self)
    }

    /// Runs `read` on the graph, or says why it cannot be read here. A graph behind the
    /// stage's position (none yet before the first batch, or an old one after the partition
    /// came back in a rebalance) is brought up to it first.
    async fn read<R>(&self, read: impl FnOnce(&IdentityGraph) -> R) -> Result<R, Status> {
        let position = self
            .status
            .positions()
            .into_iter()
            .find(|(partition, _)| partition.topic == self.topics.inputs)
            .map(|(_, position)| position);
        let Some(position) = position else {
            return Err(Status::unavailable(
                "this process does not hold the identity graph: ask the process that owns identity.inputs",
            ));
        };
        if !self.graph.holds(position) {
            self.processor.prepare(position).await.map_err(|error| {
                Status::unavailable(format!("the identity graph cannot be loaded: {error}"))
            })?;
        }
        self.graph
            .read(read)
            .ok_or_else(|| Status::unavailable("the identity graph is loading; retry shortly"))
    }

    /// Appends `decision` to `identity.inputs` and waits until it is applied; returns the
    /// changes it made and its offset.
    async fn decide(&self, decision: Input) -> Result<(Vec<Change>, u64), Status> {
        let record = InputRecord::Decision(decision).outgoing(now_millis());
        let positions = self
            .log
            .append(&self.topics.inputs, vec![record])
            .await
            .map_err(|error| Status::unavailable(format!("identity.inputs: {error}")))?;
        let offset = positions
            .first()
            .map(|position| position.offset)
            .ok_or_else(|| Status::internal("identity.inputs gave no position"))?;
        let mut durable = self.graph.durable();
        let applied = tokio::time::timeout(
            self.decision_timeout,
            durable.wait_for(|durable| *durable > offset),
        )
        .await;
        match applied {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(Status::unavailable("the identity stage stopped")),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "the decision is recorded at identity.inputs offset {offset} and will be applied, but was not within {:?}",
                    self.decision_timeout
                )));
            }
        }
        match self.graph.outcome(offset) {
            Some(Ok(changes)) => Ok((changes, offset)),
            Some(Err(error)) => Err(graph_status(&error)),
            None => Err(Status::unavailable(format!(
                "the decision at identity.inputs offset {offset} was applied by another process; see ListChanges"
            ))),
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// Field violations gathered while checking a request (every Kinfold service checks its
/// requests with these).
#[derive(Debug, Default)]
pub struct Violations(ErrorDetails);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.add_bad_request_violation(field, description);
    }

    pub fn customer_id(&mut self, field: &str, value: &str) -> Option<CustomerId> {
        if value.is_empty() {
            self.add(field, "required");
            return None;
        }
        match uuid::Uuid::parse_str(value) {
            Ok(id) => Some(CustomerId(id)),
            Err(_) => {
                self.add(field, "not a customer id (a UUID)");
                None
            }
        }
    }

    fn reason(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "required: say why");
        } else if value.len() > MAX_REASON_LEN {
            self.add(field, format!("longer than {MAX_REASON_LEN} bytes"));
        }
    }

    pub fn page_size(&mut self, field: &str, value: u32) -> usize {
        if value > MAX_PAGE_SIZE {
            self.add(field, format!("at most {MAX_PAGE_SIZE}"));
        }
        (if value == 0 { DEFAULT_PAGE_SIZE } else { value }).min(MAX_PAGE_SIZE) as usize
    }

    pub fn identifier(&mut self, field: &str, value: &pb::Identifier) -> Option<Identifier> {
        let kind = match value.kind.parse::<IdentifierKind>() {
            Ok(kind) => kind,
            Err(error) => {
                self.add(&format!("{field}.kind"), error);
                return None;
            }
        };
        match Identifier::parse(kind, &value.issuer, &value.value) {
            Ok(identifier) => Some(identifier),
            Err(error) => {
                self.add(&format!("{field}.value"), error.to_string());
                None
            }
        }
    }

    /// `Ok` when nothing was violated, else INVALID_ARGUMENT with every violation.
    pub fn check(self) -> Result<(), Status> {
        if self.0.has_bad_request_violations() {
            Err(self.into_status())
        } else {
            Ok(())
        }
    }

    pub fn into_status(self) -> Status {
        Status::with_error_details(
            Code::InvalidArgument,
            "invalid request; see the field violations",
            self.0,
        )
    }
}

fn graph_status(error: &GraphError) -> Status {
    match error {
        GraphError::UnknownCustomer(_) | GraphError::UnknownReview(_) => {
            Status::not_found(error.to_string())
        }
        GraphError::SameCustomer => Status::with_error_details(
            Code::InvalidArgument,
            error.to_string(),
            ErrorDetails::with_bad_request_violation(
                "absorbed_customer_id",
                "the same customer as the survivor",
            ),
        ),
        GraphError::InvalidRules(_) => Status::with_error_details(
            Code::InvalidArgument,
            error.to_string(),
            ErrorDetails::with_bad_request_violation("rules_toml", error.to_string()),
        ),
        GraphError::BreaksRule(_) | GraphError::NotMerged { .. } => {
            Status::failed_precondition(error.to_string())
        }
    }
}

pub fn invalid_page_token() -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        "invalid page token",
        ErrorDetails::with_bad_request_violation("page_token", "not a token this API gave"),
    )
}

/// A review page's token: the last review id given, in hex.
fn review_page_token(token: &str) -> Result<u64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(token, 16).map_err(|_| invalid_page_token())
}

/// A changes page's token: where the next page starts, the change key in hex.
fn changes_page_token(token: &str) -> Result<Bytes, Status> {
    if token.is_empty() {
        return Ok(change_key(0, 0));
    }
    let (offset, index) = match (token.get(..16), token.get(16..), token.len()) {
        (Some(offset), Some(index), 24) => (offset, index),
        _ => return Err(invalid_page_token()),
    };
    let offset = u64::from_str_radix(offset, 16).map_err(|_| invalid_page_token())?;
    let index = u32::from_str_radix(index, 16).map_err(|_| invalid_page_token())?;
    Ok(change_key(offset, index))
}

pub fn identifier_proto(identifier: &Identifier) -> pb::Identifier {
    pb::Identifier {
        kind: identifier.kind.as_str().to_owned(),
        issuer: identifier.issuer.clone(),
        value: identifier.value.clone(),
    }
}

fn identifiers_proto<'a>(
    identifiers: impl IntoIterator<Item = &'a Arc<Identifier>>,
) -> Vec<pb::Identifier> {
    identifiers
        .into_iter()
        .map(|identifier| identifier_proto(identifier))
        .collect()
}

fn customer_proto(graph: &IdentityGraph, customer: CustomerId) -> Option<pb::Customer> {
    let held = graph.customer(&customer)?;
    Some(pb::Customer {
        customer_id: customer.to_string(),
        identifiers: identifiers_proto(&held.identifiers),
        absorbed_customer_ids: graph.absorbed(&customer).map(ToString::to_string).collect(),
    })
}

fn optional_customer(customer: Option<CustomerId>) -> String {
    customer
        .map(|customer| customer.to_string())
        .unwrap_or_default()
}

fn cause_proto(cause: &Cause) -> pb::Cause {
    pb::Cause {
        by: Some(match cause {
            Cause::Event { event_id } => pb::cause::By::EventId(event_id.to_string()),
            Cause::Manual { reason } => pb::cause::By::ManualReason(reason.clone()),
        }),
    }
}

/// A change as the API gives it.
pub fn change_proto(change: &Change, input_offset: u64) -> pb::Change {
    use pb::change::Change as Kind;
    let (cause, kind) = match change {
        Change::Created { customer, cause } => (
            Some(cause),
            Kind::Created(pb::change::Created {
                customer_id: customer.to_string(),
            }),
        ),
        Change::Linked {
            customer,
            identifier,
            cause,
        } => (
            Some(cause),
            Kind::Linked(pb::change::Linked {
                customer_id: customer.to_string(),
                identifier: Some(identifier_proto(identifier)),
            }),
        ),
        Change::Merged {
            survivor,
            absorbed,
            identifiers,
            cause,
        } => (
            Some(cause),
            Kind::Merged(pb::change::Merged {
                survivor_customer_id: survivor.to_string(),
                absorbed_customer_id: absorbed.to_string(),
                identifiers: identifiers_proto(identifiers),
            }),
        ),
        Change::Erased { customer, cause } => (
            Some(cause),
            Kind::Erased(pb::change::Erased {
                customer_id: customer.to_string(),
            }),
        ),
        Change::Decided {
            review,
            approved,
            cause,
            ..
        } => (
            Some(cause),
            Kind::Decided(pb::change::Decided {
                review_id: *review,
                approved: *approved,
            }),
        ),
        Change::Split {
            customer,
            restored,
            identifiers,
            cause,
        } => (
            Some(cause),
            Kind::Split(pb::change::Split {
                customer_id: customer.to_string(),
                restored_customer_id: restored.to_string(),
                identifiers: identifiers_proto(identifiers),
            }),
        ),
        Change::RulesChanged { cause } => {
            (Some(cause), Kind::RulesChanged(pb::change::RulesChanged {}))
        }
        Change::Moved { event_id, from, to } => (
            None,
            Kind::Moved(pb::change::Moved {
                event_id: event_id.to_string(),
                from_customer_id: optional_customer(*from),
                to_customer_id: optional_customer(*to),
            }),
        ),
        Change::Refused {
            review,
            customer,
            other,
            identifier,
            rule,
            cause,
        } => (
            Some(cause),
            Kind::Refused(pb::change::Refused {
                review_id: *review,
                customer_id: customer.to_string(),
                other_customer_id: optional_customer(*other),
                identifier: identifier.as_deref().map(identifier_proto),
                rule: rule.clone(),
            }),
        ),
    };
    pb::Change {
        input_offset,
        cause: cause.map(cause_proto),
        change: Some(kind),
    }
}

fn changes_proto(changes: &[Change], input_offset: u64) -> Vec<pb::Change> {
    changes
        .iter()
        .map(|change| change_proto(change, input_offset))
        .collect()
}

#[tonic::async_trait]
impl IdentityApi for IdentityService {
    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        match request.key {
            None => {
                violations.add("key", "give an identifier or a customer_id");
                Err(violations.into_status())
            }
            Some(pb::resolve_request::Key::Identifier(identifier)) => {
                let identifier = violations.identifier("identifier", &identifier);
                violations.check()?;
                let identifier = identifier.expect("checked");
                let customer = self
                    .read(|graph| {
                        graph
                            .holder(&identifier)
                            .and_then(|customer| customer_proto(graph, customer))
                    })
                    .await?;
                let customer = customer
                    .ok_or_else(|| Status::not_found(format!("no customer holds {identifier}")))?;
                Ok(Response::new(pb::ResolveResponse {
                    customer: Some(customer),
                    identifier: Some(identifier_proto(&identifier)),
                }))
            }
            Some(pb::resolve_request::Key::CustomerId(customer_id)) => {
                let customer = violations.customer_id("customer_id", &customer_id);
                violations.check()?;
                let customer = customer.expect("checked");
                let found = self
                    .read(|graph| {
                        graph
                            .current(customer)
                            .and_then(|current| customer_proto(graph, current))
                    })
                    .await?;
                let found =
                    found.ok_or_else(|| Status::not_found(format!("no customer {customer}")))?;
                Ok(Response::new(pb::ResolveResponse {
                    customer: Some(found),
                    identifier: None,
                }))
            }
        }
    }

    async fn merge(
        &self,
        request: Request<pb::MergeRequest>,
    ) -> Result<Response<pb::MergeResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let survivor =
            violations.customer_id("survivor_customer_id", &request.survivor_customer_id);
        let absorbed =
            violations.customer_id("absorbed_customer_id", &request.absorbed_customer_id);
        violations.reason("reason", &request.reason);
        if survivor.is_some() && survivor == absorbed {
            violations.add("absorbed_customer_id", "the same customer as the survivor");
        }
        violations.check()?;
        let (survivor, absorbed) = (survivor.expect("checked"), absorbed.expect("checked"));
        self.read(|graph| {
            for customer in [survivor, absorbed] {
                if graph.customer(&customer).is_none() {
                    return Err(graph_status(&GraphError::UnknownCustomer(customer)));
                }
            }
            Ok(())
        })
        .await??;
        let (changes, offset) = self
            .decide(Input::Merge {
                survivor,
                absorbed,
                reason: request.reason,
            })
            .await?;
        let survivor = self.read(|graph| customer_proto(graph, survivor)).await?;
        Ok(Response::new(pb::MergeResponse {
            changes: changes_proto(&changes, offset),
            survivor,
        }))
    }

    async fn split(
        &self,
        request: Request<pb::SplitRequest>,
    ) -> Result<Response<pb::SplitResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let customer = violations.customer_id("customer_id", &request.customer_id);
        let restored =
            violations.customer_id("restored_customer_id", &request.restored_customer_id);
        violations.reason("reason", &request.reason);
        violations.check()?;
        let (customer, restored) = (customer.expect("checked"), restored.expect("checked"));
        self.read(|graph| {
            if graph.customer(&customer).is_none() {
                return Err(graph_status(&GraphError::UnknownCustomer(customer)));
            }
            if !graph
                .absorbed(&customer)
                .any(|absorbed| *absorbed == restored)
            {
                return Err(graph_status(&GraphError::NotMerged { customer, restored }));
            }
            Ok(())
        })
        .await??;
        let (changes, offset) = self
            .decide(Input::Split {
                customer,
                restored,
                reason: request.reason,
            })
            .await?;
        let (customer, restored) = self
            .read(|graph| {
                (
                    customer_proto(graph, customer),
                    customer_proto(graph, restored),
                )
            })
            .await?;
        Ok(Response::new(pb::SplitResponse {
            changes: changes_proto(&changes, offset),
            customer,
            restored,
        }))
    }

    async fn erase(
        &self,
        request: Request<pb::EraseRequest>,
    ) -> Result<Response<pb::EraseResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let customer = violations.customer_id("customer_id", &request.customer_id);
        violations.reason("reason", &request.reason);
        violations.check()?;
        let customer = customer.expect("checked");
        self.read(|graph| {
            graph
                .customer(&customer)
                .map(|_| ())
                .ok_or_else(|| graph_status(&GraphError::UnknownCustomer(customer)))
        })
        .await??;
        let (changes, offset) = self
            .decide(Input::Erase {
                customer,
                reason: request.reason,
            })
            .await?;
        Ok(Response::new(pb::EraseResponse {
            changes: changes_proto(&changes, offset),
        }))
    }

    async fn list_changes(
        &self,
        request: Request<pb::ListChangesRequest>,
    ) -> Result<Response<pb::ListChangesResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let customer = violations.customer_id("customer_id", &request.customer_id);
        let page_size = violations.page_size("page_size", request.page_size);
        violations.check()?;
        let customer = customer.expect("checked");
        let from = changes_page_token(&request.page_token)?;
        let rows = self
            .kv
            .scan_partition(
                CHANGES_TABLE,
                customer.to_string().as_bytes(),
                &from,
                page_size + 1,
            )
            .await
            .map_err(|error| Status::unavailable(format!("identity changes: {error}")))?;
        if rows.is_empty() && request.page_token.is_empty() {
            return Err(Status::not_found(format!(
                "no changes of customer {customer}"
            )));
        }
        let mut changes = Vec::with_capacity(page_size.min(rows.len()));
        for row in rows.iter().take(page_size) {
            let (offset, _) = split_change_key(&row.clustering_key)?;
            let change: Change = serde_json::from_slice(&row.value).map_err(|error| {
                Status::internal(format!("a stored change does not read: {error}"))
            })?;
            changes.push(change_proto(&change, offset));
        }
        let next_page_token = match rows.get(page_size) {
            Some(next) => {
                let (offset, index) = split_change_key(&next.clustering_key)?;
                format!("{offset:016x}{index:08x}")
            }
            None => String::new(),
        };
        Ok(Response::new(pb::ListChangesResponse {
            changes,
            next_page_token,
        }))
    }

    async fn list_review(
        &self,
        request: Request<pb::ListReviewRequest>,
    ) -> Result<Response<pb::ListReviewResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let page_size = violations.page_size("page_size", request.page_size);
        violations.check()?;
        let after = review_page_token(&request.page_token)?;
        let (items, more) = self
            .read(|graph| {
                let mut waiting = graph.review().filter(|item| item.id > after);
                let items: Vec<pb::ReviewItem> = waiting
                    .by_ref()
                    .take(page_size)
                    .map(|item| pb::ReviewItem {
                        review_id: item.id,
                        customer_id: item.customer.to_string(),
                        other_customer_id: optional_customer(item.other),
                        identifier: item.identifier.as_deref().map(identifier_proto),
                        rule: item.rule.clone(),
                        cause: Some(cause_proto(&item.cause)),
                    })
                    .collect();
                (items, waiting.next().is_some())
            })
            .await?;
        let next_page_token = match (more, items.last()) {
            (true, Some(last)) => format!("{:x}", last.review_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListReviewResponse {
            items,
            next_page_token,
        }))
    }

    async fn re_resolve(
        &self,
        request: Request<pb::ReResolveRequest>,
    ) -> Result<Response<pb::ReResolveResponse>, Status> {
        self.re_resolve_rules(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn decide_review(
        &self,
        request: Request<pb::DecideReviewRequest>,
    ) -> Result<Response<pb::DecideReviewResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        if request.review_id == 0 {
            violations.add("review_id", "required");
        }
        violations.reason("reason", &request.reason);
        violations.check()?;
        let decision = self
            .read(|graph| {
                graph
                    .review()
                    .find(|item| item.id == request.review_id)
                    .map(|item| Input::Decide {
                        customer: item.customer,
                        other: item.other,
                        identifier: item.identifier.clone(),
                        approve: request.approve,
                        reason: request.reason.clone(),
                    })
                    .ok_or_else(|| graph_status(&GraphError::UnknownReview(request.review_id)))
            })
            .await??;
        let (changes, offset) = self.decide(decision).await?;
        Ok(Response::new(pb::DecideReviewResponse {
            changes: changes_proto(&changes, offset),
        }))
    }
}

impl IdentityService {
    /// `ReResolve`: checked here, applied by the resolve part in the graph's input order.
    async fn re_resolve_rules(
        &self,
        request: pb::ReResolveRequest,
    ) -> Result<pb::ReResolveResponse, Status> {
        let mut violations = Violations::default();
        let rules = match Rules::from_toml(&request.rules_toml) {
            Ok(rules) => Some(rules),
            Err(error) => {
                violations.add("rules_toml", error.to_string());
                None
            }
        };
        violations.reason("reason", &request.reason);
        violations.check()?;
        let rules = rules.expect("checked");
        let customers_before = self.read(|graph| graph.customer_count()).await? as u64;
        let (changes, offset) = self
            .decide(Input::Rules {
                rules: Box::new(rules.file().clone()),
                reason: request.reason,
            })
            .await?;
        let customers_after = self.read(|graph| graph.customer_count()).await? as u64;
        Ok(pb::ReResolveResponse {
            changes: changes_proto(&changes, offset),
            customers_before,
            customers_after,
        })
    }
}

/// The input offset and index of a change's clustering key.
fn split_change_key(key: &Bytes) -> Result<(u64, u32), Status> {
    let bad = || Status::internal("a stored change has a malformed key");
    let offset = key
        .get(..8)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(bad)?;
    let index = key
        .get(8..12)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(bad)?;
    Ok((u64::from_be_bytes(offset), u32::from_be_bytes(index)))
}
