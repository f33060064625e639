//! `kinfold.v1.SegmentService` over gRPC: segments defined, counted, listed and explained from
//! the segment stage's live state, and previews of rules not saved over the stored profiles.

use crate::stage::{
    DefinitionError, MAX_RULE_BYTES, MembershipRecord, SegmentDefinition, SegmentError,
    SegmentStage, parse_rule,
};
use kinfold_core::ports::EventLog;
use kinfold_identity::service::{Violations, invalid_page_token};
use kinfold_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The most members a preview samples.
pub const MAX_SAMPLE: u32 = 1_000;
const DEFAULT_SAMPLE: u32 = 20;

/// The segment service over a running segment stage.
#[derive(Debug, Clone)]
pub struct SegmentService {
    stage: Arc<SegmentStage>,
}

impl SegmentService {
    pub fn new(stage: Arc<SegmentStage>) -> Self {
        Self { stage }
    }

    pub fn into_server(self) -> pb::segment_service_server::SegmentServiceServer<Self> {
        pb::segment_service_server::SegmentServiceServer::new(self)
    }
}

fn internal(error: &SegmentError) -> Status {
    tracing::error!(%error, "segment service");
    Status::unavailable(error.to_string())
}

fn definition_status(error: DefinitionError) -> Status {
    match error {
        DefinitionError::Rule(error) => Status::with_error_details(
            Code::InvalidArgument,
            format!("the rule does not parse: {}", error.message),
            ErrorDetails::with_bad_request_violation(
                "rule",
                format!(
                    "{} (bytes {}..{})",
                    error.message, error.span.start, error.span.end
                ),
            ),
        ),
        DefinitionError::Invalid { field, reason } => Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid {field}: {reason}"),
            ErrorDetails::with_bad_request_violation(field, reason),
        ),
        DefinitionError::Unknown(id) => Status::not_found(format!("no segment {id}")),
        DefinitionError::Exists(id) => {
            Status::already_exists(format!("segment {id} exists already"))
        }
        DefinitionError::Stage(error) => internal(&error),
    }
}

fn definition_proto(definition: SegmentDefinition) -> pb::SegmentDefinition {
    pb::SegmentDefinition {
        id: definition.id,
        version: definition.version,
        rule: definition.rule,
        purpose: definition.purpose.unwrap_or_default(),
    }
}

fn purpose(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn required(violations: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        violations.add(field, "required");
    } else if field == "rule" && value.len() > MAX_RULE_BYTES {
        violations.add(field, format!("longer than {MAX_RULE_BYTES} bytes"));
    }
}

/// A definition request's required fields.
fn check_definition(id: &str, rule: &str) -> Result<(), Status> {
    let mut violations = Violations::default();
    required(&mut violations, "id", id);
    required(&mut violations, "rule", rule);
    violations.check()
}

/// The answer to a call that defines or deletes a segment.
fn answer(
    outcome: Result<SegmentDefinition, DefinitionError>,
) -> Result<Response<pb::SegmentDefinition>, Status> {
    outcome
        .map(|definition| Response::new(definition_proto(definition)))
        .map_err(definition_status)
}

fn unknown_segment(id: &str) -> Status {
    Status::not_found(format!("no segment {id}"))
}

/// A server stream of the service.
type Streaming<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// How often a watch looks for new records.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Members streamed per message.
const MEMBER_BATCH: usize = 1_000;

fn change_proto(record: MembershipRecord) -> pb::MembershipChange {
    pb::MembershipChange {
        id: record.id.to_string(),
        segment_id: record.segment,
        version: record.version,
        customer_id: record.customer,
        entered: record.entered,
        at_micros: record.at,
        cause: record.cause,
        event_id: record
            .event_id
            .map(|event| event.to_string())
            .unwrap_or_default(),
    }
}

/// Sends the records of `segments.changes` (of `segment`, if not empty) from the start or from
/// the end of each partition as they come, until `to` is closed.
async fn watch(
    log: Arc<dyn EventLog>,
    topic: String,
    segment: String,
    from_start: bool,
    to: tokio::sync::mpsc::Sender<Result<pb::MembershipChange, Status>>,
) {
    let partitions = match log.partitions(&topic).await {
        Ok(partitions) => partitions,
        Err(error) => {
            let _ = to.send(Err(Status::unavailable(error.to_string()))).await;
            return;
        }
    };
    let mut next = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        match log.watermarks(&topic, partition).await {
            Ok((low, high)) => next.push(if from_start { low } else { high }),
            Err(error) => {
                let _ = to.send(Err(Status::unavailable(error.to_string()))).await;
                return;
            }
        }
    }
    loop {
        let mut quiet = true;
        for (partition, next) in (0..partitions).zip(next.iter_mut()) {
            let records = match log.read(&topic, partition, *next, 1_000).await {
                Ok(records) => records,
                Err(error) => {
                    let _ = to.send(Err(Status::unavailable(error.to_string()))).await;
                    return;
                }
            };
            if let Some(last) = records.last() {
                *next = last.offset + 1;
                quiet = false;
            }
            for record in records {
                let Ok(change) = serde_json::from_slice::<MembershipRecord>(&record.value) else {
                    tracing::warn!(
                        partition,
                        offset = record.offset,
                        "unreadable segments.changes record; skipped"
                    );
                    continue;
                };
                if (segment.is_empty() || change.segment == segment)
                    && to.send(Ok(change_proto(change))).await.is_err()
                {
                    return;
                }
            }
        }
        if to.is_closed() {
            return;
        }
        if quiet {
            tokio::time::sleep(WATCH_POLL).await;
        }
    }
}

#[tonic::async_trait]
impl pb::segment_service_server::SegmentService for SegmentService {
    type StreamMembersStream = Streaming<pb::MemberBatch>;
    type WatchChangesStream = Streaming<pb::MembershipChange>;

    async fn stream_members(
        &self,
        request: Request<pb::StreamMembersRequest>,
    ) -> Result<Response<Self::StreamMembersStream>, Status> {
        let request = request.into_inner();
        let members = self
            .stage
            .members(&request.segment_id)
            .await
            .map_err(|error| internal(&error))?
            .ok_or_else(|| unknown_segment(&request.segment_id))?;
        let batches: Vec<Result<pb::MemberBatch, Status>> = members
            .chunks(MEMBER_BATCH)
            .map(|chunk| {
                Ok(pb::MemberBatch {
                    customer_ids: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let request = request.into_inner();
        if !request.segment_id.is_empty()
            && self
                .stage
                .definition(&request.segment_id)
                .await
                .map_err(|error| internal(&error))?
                .is_none()
        {
            return Err(unknown_segment(&request.segment_id));
        }
        let (to, from) = tokio::sync::mpsc::channel(256);
        tokio::spawn(watch(
            self.stage.log().clone(),
            self.stage.topics().changes.clone(),
            request.segment_id,
            request.from_start,
            to,
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(from),
        )))
    }

    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::SegmentDefinition>, Status> {
        let request = request.into_inner();
        check_definition(&request.id, &request.rule)?;
        answer(
            self.stage
                .create_segment(&request.id, &request.rule, purpose(&request.purpose))
                .await,
        )
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::SegmentDefinition>, Status> {
        let request = request.into_inner();
        check_definition(&request.id, &request.rule)?;
        answer(
            self.stage
                .update_segment(&request.id, &request.rule, purpose(&request.purpose))
                .await,
        )
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::SegmentDefinition>, Status> {
        answer(self.stage.delete_segment(&request.into_inner().id).await)
    }

    async fn list_segments(
        &self,
        _request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let segments = self
            .stage
            .definitions()
            .await
            .map_err(|error| internal(&error))?;
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: segments.into_iter().map(definition_proto).collect(),
        }))
    }

    async fn preview_segment(
        &self,
        request: Request<pb::PreviewSegmentRequest>,
    ) -> Result<Response<pb::PreviewSegmentResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        required(&mut violations, "rule", &request.rule);
        if request.sample_size > MAX_SAMPLE {
            violations.add("sample_size", format!("at most {MAX_SAMPLE}"));
        }
        violations.check()?;
        let rule = parse_rule(&request.rule).map_err(definition_status)?;
        let sample = if request.sample_size == 0 {
            DEFAULT_SAMPLE
        } else {
            request.sample_size
        };
        let purpose = purpose(&request.purpose);
        let preview = if request.from_stored_profiles {
            self.stage
                .preview_from_store(&rule, purpose.as_deref(), sample as usize)
                .await
        } else {
            self.stage
                .preview(&rule, purpose.as_deref(), sample as usize)
                .await
        }
        .map_err(|error| internal(&error))?;
        Ok(Response::new(pb::PreviewSegmentResponse {
            members: preview.members,
            customers: preview.customers,
            sample: preview.sample,
        }))
    }

    async fn count_members(
        &self,
        request: Request<pb::CountMembersRequest>,
    ) -> Result<Response<pb::CountMembersResponse>, Status> {
        let request = request.into_inner();
        let definition = self
            .stage
            .definition(&request.segment_id)
            .await
            .map_err(|error| internal(&error))?
            .ok_or_else(|| unknown_segment(&request.segment_id))?;
        let members = self
            .stage
            .count(&request.segment_id)
            .await
            .map_err(|error| internal(&error))?
            .ok_or_else(|| unknown_segment(&request.segment_id))?;
        Ok(Response::new(pb::CountMembersResponse {
            members,
            version: definition.version,
        }))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let size = violations.page_size("page_size", request.page_size);
        violations.check()?;
        let members = self
            .stage
            .members(&request.segment_id)
            .await
            .map_err(|error| internal(&error))?
            .ok_or_else(|| unknown_segment(&request.segment_id))?;
        // The token is the last customer id given.
        if !request.page_token.is_empty() && uuid::Uuid::parse_str(&request.page_token).is_err() {
            return Err(invalid_page_token());
        }
        let start =
            members.partition_point(|customer| customer.as_str() <= request.page_token.as_str());
        let page: Vec<String> = members[start..].iter().take(size).cloned().collect();
        let next_page_token = if start + page.len() < members.len() {
            page.last().cloned().unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListMembersResponse {
            customer_ids: page,
            next_page_token,
        }))
    }

    async fn is_member(
        &self,
        request: Request<pb::IsMemberRequest>,
    ) -> Result<Response<pb::IsMemberResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let customer = violations.customer_id("customer_id", &request.customer_id);
        violations.check()?;
        let customer = customer.expect("checked").to_string();
        let (member, version) = self
            .stage
            .is_member(&request.segment_id, &customer)
            .await
            .map_err(|error| internal(&error))?
            .ok_or_else(|| unknown_segment(&request.segment_id))?;
        Ok(Response::new(pb::IsMemberResponse { member, version }))
    }

    async fn explain_membership(
        &self,
        request: Request<pb::ExplainMembershipRequest>,
    ) -> Result<Response<pb::ExplainMembershipResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let customer = violations.customer_id("customer_id", &request.customer_id);
        violations.check()?;
        let customer = customer.expect("checked").to_string();
        if self
            .stage
            .definition(&request.segment_id)
            .await
            .map_err(|error| internal(&error))?
            .is_none()
        {
            return Err(unknown_segment(&request.segment_id));
        }
        let (member, consented, explanation) = self
            .stage
            .explain(&request.segment_id, &customer)
            .await
            .map_err(|error| internal(&error))?
            .ok_or_else(|| Status::not_found(format!("no profile of customer {customer}")))?;
        Ok(Response::new(pb::ExplainMembershipResponse {
            member,
            holds: match explanation.holds {
                Some(true) => "true",
                Some(false) => "false",
                None => "unknown",
            }
            .to_owned(),
            consented,
            lines: explanation.lines(),
        }))
    }
}
