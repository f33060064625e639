//! The gRPC server: Kinfold's services (identity, profiles and segments, each with its stage), gRPC health checking, and server reflection in both its versions (v1 and v1alpha),
//! so that a generic client can learn the API from the server itself.
//!
//! Explicit limits: requests up to 4 MiB, answers up to 16 MiB, and every call ends within
//! 60 s unless the client sets a shorter deadline.

use kinfold_identity::service::IdentityService;
use kinfold_profile::service::ProfileService;
use kinfold_proto::v1::identity_service_server::IdentityServiceServer;
use kinfold_proto::v1::profile_service_server::ProfileServiceServer;
use kinfold_proto::v1::segment_service_server::SegmentServiceServer;
use kinfold_segments::service::SegmentService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// The largest request a client may send.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest answer the server sends.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The longest a call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The services this process serves.
#[derive(Debug, Default)]
pub struct Services {
    /// Present when this process runs the identity stage.
    pub identity: Option<IdentityService>,
    /// Present when this process runs the profile stage.
    pub profile: Option<ProfileService>,
    /// Present when this process runs the segment stage.
    pub segments: Option<SegmentService>,
}

/// The connections `listener` accepts, with Nagle's algorithm off: an answer larger than a
/// segment would otherwise wait for the client's delayed acknowledgement (40 ms a call).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Serves `services` on `listener` until `shutdown`, then lets calls in flight finish.
pub async fn run(
    listener: TcpListener,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kinfold_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let identity = services.identity.map(|service| {
        service
            .into_server()
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)
    });
    if identity.is_some() {
        health
            .set_serving::<IdentityServiceServer<IdentityService>>()
            .await;
    }
    let profile = services.profile.map(|service| {
        service
            .into_server()
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)
    });
    if profile.is_some() {
        health
            .set_serving::<ProfileServiceServer<ProfileService>>()
            .await;
    }
    let segments = services.segments.map(|service| {
        service
            .into_server()
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)
    });
    if segments.is_some() {
        health
            .set_serving::<SegmentServiceServer<SegmentService>>()
            .await;
    }
    tonic::transport::Server::builder()
        .timeout(CALL_TIMEOUT)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(identity)
        .add_optional_service(profile)
        .add_optional_service(segments)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await?;
    Ok(())
}
