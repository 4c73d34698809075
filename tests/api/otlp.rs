//! OTLP logs in protobuf: posted to `/v1/logs` as `application/x-protobuf` (an OpenTelemetry
//! collector's `otlphttp` exporter by default, Envoy's OpenTelemetry access logger with
//! `http_service`) and sent over gRPC `LogsService/Export` (the collector's `otlp` exporter,
//! Envoy's `grpc_service`), with a client built from the OpenTelemetry project's own proto
//! (`opentelemetry-proto`). The fixture is the OTLP/JSON one of `formats.rs`, re-encoded message
//! by message: each encoding counts the same calls, and a record sent in both is one record.

use crate::events::usage_totals;
use crate::formats::{fixture, gzip, post, setup, totals};
use crate::helpers::{TestApp, assert_error, on_both_databases, spawn_replica};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_databases!(
    otlp_protobuf_over_http_counts_as_json_does,
    otlp_protobuf_rejections_come_back_in_partial_success,
    otlp_grpc_export_counts_and_refuses_as_a_collector_expects,
    envoy_access_log_recipe_sends_what_tollbooth_reads,
);

/// The OTLP/JSON fixture as the `ExportLogsServiceRequest` it encodes.
fn collector_request() -> ExportLogsServiceRequest {
    let json: Value =
        serde_json::from_str(&fixture(include_str!("../fixtures/formats/otlp_logs.json"))).unwrap();
    from_json(&json)
}

/// OTLP/JSON to its message, as the specification maps them: ids in hex, 64-bit integers as
/// strings.
fn from_json(json: &Value) -> ExportLogsServiceRequest {
    let attributes = |value: &Value| -> Vec<KeyValue> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|kv| KeyValue {
                        key: kv["key"].as_str().unwrap().to_owned(),
                        value: Some(any(&kv["value"])),
                        ..KeyValue::default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let nanos = |value: &Value| value.as_str().map_or(0, |n| n.parse().unwrap());
    let bytes = |value: &Value| {
        value
            .as_str()
            .map_or(Vec::new(), |h| hex::decode(h).unwrap())
    };
    ExportLogsServiceRequest {
        resource_logs: json["resourceLogs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|resource| ResourceLogs {
                resource: Some(Resource {
                    attributes: attributes(&resource["resource"]["attributes"]),
                    ..Resource::default()
                }),
                scope_logs: resource["scopeLogs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|scope| ScopeLogs {
                        log_records: scope["logRecords"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|log| LogRecord {
                                time_unix_nano: nanos(&log["timeUnixNano"]),
                                observed_time_unix_nano: nanos(&log["observedTimeUnixNano"]),
                                body: log.get("body").map(any),
                                attributes: attributes(&log["attributes"]),
                                trace_id: bytes(&log["traceId"]),
                                span_id: bytes(&log["spanId"]),
                                ..LogRecord::default()
                            })
                            .collect(),
                        ..ScopeLogs::default()
                    })
                    .collect(),
                ..ResourceLogs::default()
            })
            .collect(),
    }
}

fn any(value: &Value) -> AnyValue {
    use any_value::Value as Kind;
    let kind = if let Some(text) = value["stringValue"].as_str() {
        Kind::StringValue(text.to_owned())
    } else if let Some(number) = value["intValue"].as_str() {
        Kind::IntValue(number.parse().unwrap())
    } else if let Some(number) = value["doubleValue"].as_f64() {
        Kind::DoubleValue(number)
    } else if let Some(flag) = value["boolValue"].as_bool() {
        Kind::BoolValue(flag)
    } else if let Some(items) = value["arrayValue"]["values"].as_array() {
        Kind::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        })
    } else {
        panic!("an AnyValue this test does not encode: {value}")
    };
    AnyValue { value: Some(kind) }
}

async fn post_protobuf(
    app: &TestApp,
    key: &str,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut request = app
        .client
        .post(app.url("/v1/logs"))
        .bearer_auth(key)
        .header("content-type", "application/x-protobuf")
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, kind, response.bytes().await.unwrap().to_vec())
}

async fn otlp_protobuf_over_http_counts_as_json_does(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let body = collector_request().encode_to_vec();
    let (status, kind, answer) = post_protobuf(&app, &key, gzip(&body), Some("gzip")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("application/x-protobuf"));
    let answer = ExportLogsServiceResponse::decode(&answer[..]).unwrap();
    assert_eq!(answer.partial_success, None, "{answer:?}");
    // As the JSON fixture counts: the 200 and the 500 of `acme-weather`.
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));

    // Sent again, in protobuf or in JSON: the same two records, counted once.
    let (status, _, _) = post_protobuf(&app, &key, body, None).await;
    assert_eq!(status, StatusCode::OK);
    let json = fixture(include_str!("../fixtures/formats/otlp_logs.json"));
    let (status, again) = post(&app, &key, "/v1/logs", "application/json", json).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        (again["accepted"].clone(), again["duplicates"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));

    // Not protobuf: a 400 that the collector reports as a failure; nothing stored.
    let (status, _, answer) = post_protobuf(&app, &key, b"\xff\xff\xff".to_vec(), None).await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_error(
        &(status, answer),
        StatusCode::BAD_REQUEST,
        "malformed_protobuf",
        None,
    );
    // No log record at all.
    let empty = ExportLogsServiceRequest::default().encode_to_vec();
    let (status, _, answer) = post_protobuf(&app, &key, empty, None).await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_error(
        &(status, answer),
        StatusCode::BAD_REQUEST,
        "no_readable_records",
        None,
    );
    assert_eq!(app.count_rows("call_records").await, 2);
}

async fn otlp_protobuf_rejections_come_back_in_partial_success(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let mut request = collector_request();
    // The second call's caller key is one no subscription holds.
    let second = &mut request.resource_logs[1].scope_logs[0].log_records[0];
    for attribute in &mut second.attributes {
        if attribute.key == "http.request.header.x_api_key" {
            attribute.value = Some(any(&json!({"stringValue": "nobody"})));
        }
    }
    let (status, _, answer) = post_protobuf(&app, &key, request.encode_to_vec(), None).await;
    assert_eq!(status, StatusCode::OK);
    let answer = ExportLogsServiceResponse::decode(&answer[..]).unwrap();
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_log_records, 1, "{partial:?}");
    assert!(
        partial.error_message.contains("record 1:")
            && partial.error_message.contains("unknown_consumer"),
        "{partial:?}"
    );
    assert_eq!(usage_totals(&app).await, totals((1, "1", 0, 1)));
}

async fn otlp_grpc_export_counts_and_refuses_as_a_collector_expects(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let server = spawn_replica(&app, |settings| {
        settings.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let address = server.grpc_address.clone().unwrap();
    // The collector's `otlp` exporter: gzip by default, the key in `headers`.
    let mut client = LogsServiceClient::connect(address.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let export = |request: ExportLogsServiceRequest, metadata: (&'static str, String)| {
        let mut request = tonic::Request::new(request);
        request
            .metadata_mut()
            .insert(metadata.0, metadata.1.parse().unwrap());
        request
    };
    let answer = client
        .export(export(
            collector_request(),
            ("authorization", format!("Bearer {key}")),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None, "{answer:?}");
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));

    // Envoy's `grpc_service` with the key in `initial_metadata`: the same records, counted once.
    let answer = client
        .export(export(
            collector_request(),
            ("x-tollbooth-key", key.clone()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None, "{answer:?}");
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));

    // Refused in gRPC's words: a wrong key, and a request with no record tollbooth can read
    // (INVALID_ARGUMENT: the exporter drops it and says so, it does not retry).
    let wrong = client
        .export(export(
            collector_request(),
            ("authorization", "Bearer tbg_wrong".to_owned()),
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
    let mut unreadable = collector_request();
    for resource in &mut unreadable.resource_logs {
        for log in &mut resource.scope_logs[0].log_records {
            log.attributes
                .retain(|kv| !kv.key.starts_with("http.request.header.x"));
        }
    }
    let refused = client
        .export(export(unreadable, ("x-tollbooth-key", key.clone())))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("no_readable_records"),
        "{refused:?}"
    );
    assert_eq!(app.count_rows("call_records").await, 2);
}

/// The shipped Envoy recipe (`integrations/envoy/envoy-otel-access-log.yaml`) as Envoy sends it:
/// one log record a call, the recipe's attributes with Envoy's command operators filled in for a
/// call (`%RESPONSE_CODE%` and the rest, as Envoy's access-log documentation defines them), the
/// request's start as `time_unix_nano`, its resource attributes (`log_name`, `node_name`, …) and
/// the recipe's `initial_metadata` on the gRPC call.
async fn envoy_access_log_recipe_sends_what_tollbooth_reads(app: TestApp) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integrations/envoy/envoy-otel-access-log.yaml");
    let recipe: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let logger = &recipe["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["access_log"][0]["typed_config"];
    let metadata = &logger["common_config"]["grpc_service"]["initial_metadata"][0];
    assert_eq!(metadata["value"], "tbg_YOUR_GATEWAY_KEY");
    let metadata_key = metadata["key"].as_str().unwrap().to_owned();

    let key = setup(&app, json!({})).await;
    let start = chrono::Utc::now() - chrono::Duration::minutes(1);
    let call = |id: &str, status: &str, consumer: &str| {
        let filled = |operator: &str| match operator {
            "%REQ(:METHOD)%" => "GET".to_owned(),
            "%REQ(:PATH)%" => "/weather/forecast?city=paris".to_owned(),
            "%REQ(:AUTHORITY)%" => "api.example.test".to_owned(),
            "%RESPONSE_CODE%" => status.to_owned(),
            "%REQ(X-API-KEY)%" => consumer.to_owned(),
            "%REQ(X-REQUEST-ID)%" => id.to_owned(),
            "%DURATION%" => "43".to_owned(),
            other => panic!("the recipe logs {other}, which this test does not fill in"),
        };
        let attributes = logger["attributes"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| {
                let operator = kv["value"]["string_value"].as_str().unwrap();
                json!({"key": kv["key"], "value": {"stringValue": filled(operator)}})
            })
            .collect::<Vec<_>>();
        json!({"timeUnixNano": format!("{}", start.timestamp_nanos_opt().unwrap()),
            "attributes": attributes})
    };
    let body = json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "log_name", "value": {"stringValue": "tollbooth"}},
        {"key": "zone_name", "value": {"stringValue": ""}},
        {"key": "cluster_name", "value": {"stringValue": ""}},
        {"key": "node_name", "value": {"stringValue": "envoy-1"}}]},
        "scopeLogs": [{"logRecords": [
            call("5d0e7c3a-93c1-4f5e-a1b8-2f4c6e8a0b1d", "200", "k1"),
            call("9b2f4d6e-1a3c-4e5f-8a7b-6c5d4e3f2a1b", "503", "k1"),
            // A caller with no key: Envoy logs `-`, no subscription holds it.
            call("0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "200", "-")]}]}]});
    let server = spawn_replica(&app, |settings| {
        settings.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut client = LogsServiceClient::connect(server.grpc_address.clone().unwrap())
        .await
        .unwrap();
    let mut request = tonic::Request::new(from_json(&body));
    request.metadata_mut().insert(
        metadata_key
            .parse::<tonic::metadata::MetadataKey<_>>()
            .unwrap(),
        key.parse().unwrap(),
    );
    let answer = client.export(request).await.unwrap().into_inner();
    let partial = answer
        .partial_success
        .expect("the keyless call is not taken");
    assert_eq!(partial.rejected_log_records, 1, "{partial:?}");
    assert!(partial.error_message.contains("record 2:"), "{partial:?}");
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));
}
