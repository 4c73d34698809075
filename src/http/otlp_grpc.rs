//! OTLP/gRPC logs (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, with the
//! OpenTelemetry project's own messages from `opentelemetry-proto`): what Envoy's OpenTelemetry
//! access logger (`grpc_service`) and an OpenTelemetry collector's `otlp` exporter send. Each log
//! record is a call, read as `POST /v1/logs` reads it, and committed before the answer.
//!
//! The gateway's key comes in the call's metadata, as `authorization: Bearer <key>` (a collector's
//! `headers`) or `x-tollbooth-key` (Envoy's `initial_metadata`). A request bigger than
//! `TOLLBOOTH_EVENTS_MAX_BYTES` once inflated (gzip is taken) is refused by tonic before it is read.

use super::AppState;
use super::error::ApiError;
use super::events::{commit, otlp_response};
use super::extract::known_gateway;
use crate::metering::formats;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;

/// The gRPC service; serve it with `tonic`.
pub fn service(state: AppState) -> LogsServiceServer<OtlpLogs> {
    let max_bytes = state.settings.events_max_bytes;
    LogsServiceServer::new(OtlpLogs { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}

pub struct OtlpLogs {
    state: AppState,
}

/// Where Envoy's `initial_metadata` puts the gateway's key (a collector uses `authorization`).
const GATEWAY_KEY: &str = "x-tollbooth-key";

#[tonic::async_trait]
impl LogsService for OtlpLogs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let key = gateway_key(request.metadata()).ok_or_else(|| {
            tonic::Status::unauthenticated(
                "send the gateway key as `authorization: Bearer <key>` (a collector's `headers`) \
                 or `x-tollbooth-key` (Envoy's `initial_metadata`)",
            )
        })?;
        let gateway = known_gateway(&self.state, &key)
            .await
            .ok_or_else(|| tonic::Status::unauthenticated("the gateway key is not valid"))?;
        let export = request.into_inner();
        let reads = formats::otlp_protobuf(&export, &gateway.ingest);
        let summary = commit(&reads, &gateway, &self.state)
            .await
            .map_err(status_of)?;
        Ok(tonic::Response::new(otlp_response(&summary)))
    }
}

fn gateway_key(metadata: &MetadataMap) -> Option<String> {
    let text = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
    if let Some(key) = text(GATEWAY_KEY) {
        return Some(key.trim().to_owned());
    }
    let (scheme, token) = text("authorization")?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// A refusal in gRPC's words, as OTLP's exporters read them: UNAVAILABLE is sent again later,
/// anything else is dropped and reported by the sender.
fn status_of(error: ApiError) -> tonic::Status {
    let message = format!("{}: {}", error.code, error.message);
    match error.status {
        StatusCode::SERVICE_UNAVAILABLE => tonic::Status::unavailable(message),
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Status::resource_exhausted(message),
        StatusCode::UNAUTHORIZED => tonic::Status::unauthenticated(message),
        status if status.is_client_error() => tonic::Status::invalid_argument(message),
        _ => tonic::Status::internal(message),
    }
}
