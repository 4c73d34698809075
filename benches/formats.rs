//! Ingestion throughput per sender format (issue "gateway ingestion"), against a real
//! `tollbooth serve` on SQLite: the same calls posted as tollbooth's own records (the baseline,
//! in the same run) and as each format a sender posts by default, and the ratio of each to the
//! baseline (goal: a mapped format keeps at least 0.8 of the native records/s).
//!
//! Each format is measured right after a baseline run of its own (this machine's speed drifts
//! within a run), on a fresh database each: an api routed at `/weather/`, a tier, 100 subscriptions with
//! one consumer key each and a gateway (`ingest.format` `auto`); `RECORDS` calls (UUIDv7 ids in
//! time order over the last hour, 90 % 200, 6 % 404, 4 % 503) serialized in the format in bodies
//! of 1,000 before the clock starts, posted over 4 connections; then the records the server
//! counted as accepted (`/metrics`) must equal what was sent. Besides records/s, the server's
//! CPU time a record (`/proc/PID/stat`) is shown: it does not depend on how long requests wait.
//!
//! Run with `cargo build --release --bin tollbooth && cargo bench --bench formats`
//! (`-- --records N` changes the count, default 100,000; `-- --only otlp` measures the formats
//! whose name holds that word; `-- --repeat N` the pairs per format, default 3, of which the
//! median ratio is reported with every ratio measured).
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Database, FreshDatabase, Server, admin_post, server_binary, thousands};

const SUBSCRIPTIONS: usize = 100;
const PER_BODY: usize = 1_000;
const CONNECTIONS: usize = 4;

struct Call {
    id: String,
    key: String,
    at_ms: i64,
    status: u16,
    latency_ms: u64,
}

#[derive(Clone, Copy)]
enum Format {
    Tollbooth,
    Kong,
    Apisix,
    CloudEvents,
    Otlp,
    OtlpProtobuf,
    NginxLog,
    Vector,
}

impl Format {
    const ALL: [Format; 8] = [
        Format::Tollbooth,
        Format::Kong,
        Format::Apisix,
        Format::CloudEvents,
        Format::Otlp,
        Format::OtlpProtobuf,
        Format::NginxLog,
        Format::Vector,
    ];

    fn label(self) -> &'static str {
        match self {
            Format::Tollbooth => "tollbooth records (baseline)",
            Format::Kong => "Kong http-log (array)",
            Format::Apisix => "APISIX http-logger (array)",
            Format::CloudEvents => "CloudEvents batch (/api/v1/events)",
            Format::Otlp => "OTLP JSON logs (/v1/logs)",
            Format::OtlpProtobuf => "OTLP protobuf logs (/v1/logs)",
            Format::NginxLog => "NGINX JSON log lines (NDJSON)",
            Format::Vector => "Vector http sink (message envelope)",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Format::CloudEvents => "/api/v1/events",
            Format::Otlp | Format::OtlpProtobuf => "/v1/logs",
            _ => "/v1/events",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::CloudEvents => "application/cloudevents-batch+json",
            Format::NginxLog => "application/x-ndjson",
            Format::OtlpProtobuf => "application/x-protobuf",
            _ => "application/json",
        }
    }

    fn body(self, calls: &[Call]) -> Vec<u8> {
        let path = |c: &Call| {
            if c.status == 404 {
                "/weather/nowhere"
            } else {
                "/weather/forecast"
            }
        };
        let rfc3339 = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let nginx = |c: &Call| {
            json!({"request_id": c.id, "msec": format!("{}.{:03}", c.at_ms / 1000, c.at_ms % 1000),
                "remote_addr": "127.0.0.1", "host": "api.example.test", "request_method": "GET",
                "uri": path(c), "args": "city=paris", "status": c.status.to_string(),
                "request_time": format!("0.{:03}", c.latency_ms), "upstream_status": c.status.to_string(),
                "upstream_response_time": format!("0.{:03}", c.latency_ms),
                "http_x_api_key": c.key, "units": ""})
        };
        let text = match self {
            Format::Tollbooth => Value::Array(calls.iter().map(|c| json!({"id": c.id,
                "consumer": c.key, "api": "weather", "timestamp": rfc3339(c.at_ms),
                "status": c.status, "method": "GET", "path": path(c),
                "latency_ms": c.latency_ms})).collect()).to_string(),
            Format::Kong => Value::Array(calls.iter().map(|c| json!({
                "request": {"id": c.id, "uri": format!("{}?city=paris", path(c)),
                    "url": format!("http://localhost:8000{}?city=paris", path(c)),
                    "querystring": {"city": "paris"}, "method": "GET",
                    "headers": {"host": "localhost:8000", "user-agent": "curl/8.5.0",
                        "accept": "*/*", "x-api-key": c.key}, "size": 112},
                "upstream_uri": path(c), "upstream_status": c.status.to_string(),
                "response": {"status": c.status, "headers": {"content-type": "application/json",
                    "content-length": "57", "connection": "close", "via": "1.1 kong/3.9.1",
                    "x-kong-upstream-latency": c.latency_ms.to_string(),
                    "x-kong-proxy-latency": "2", "x-kong-request-id": c.id}, "size": 389},
                "latencies": {"kong": 2, "proxy": c.latency_ms, "request": c.latency_ms + 2, "receive": 0},
                "tries": [{"balancer_start": c.at_ms + 2, "ip": "127.0.0.1", "port": 9000, "balancer_latency": 0}],
                "route": {"id": "3b5d7f9a-1c3e-4a5b-9d7f-0a2c4e6a8c0e", "name": "weather", "paths": ["/weather/"],
                    "protocols": ["http", "https"], "strip_path": false},
                "service": {"id": "9c2e4f6a-8b0d-4e1f-a3c5-7d9e1f3a5b7c", "name": "weather",
                    "host": "127.0.0.1", "port": 9000, "protocol": "http", "retries": 5},
                "client_ip": "127.0.0.1", "started_at": c.at_ms, "source": "upstream",
                "workspace": "4a1c7e0b-2d9f-4b3a-8e6c-5f0d1a2b3c4d", "workspace_name": "default"
            })).collect()).to_string(),
            Format::Apisix => Value::Array(calls.iter().map(|c| json!({
                "request": {"url": format!("http://127.0.0.1:9080{}?city=paris", path(c)),
                    "uri": format!("{}?city=paris", path(c)), "method": "GET",
                    "headers": {"host": "127.0.0.1:9080", "user-agent": "curl/8.5.0",
                        "accept": "*/*", "x-api-key": c.key, "x-request-id": c.id},
                    "querystring": {"city": "paris"}, "size": 104},
                "response": {"status": c.status, "headers": {"content-type": "application/json",
                    "content-length": "57", "server": "APISIX/3.11.0"}, "size": 236},
                "server": {"hostname": "apisix-1", "version": "3.11.0"},
                "upstream": "127.0.0.1:9000", "service_id": "", "route_id": "weather",
                "client_ip": "127.0.0.1", "start_time": c.at_ms, "latency": c.latency_ms as f64 + 0.25,
                "upstream_latency": c.latency_ms, "apisix_latency": 0.25
            })).collect()).to_string(),
            Format::CloudEvents => Value::Array(calls.iter().map(|c| json!({"specversion": "1.0",
                "id": c.id, "source": "api-gateway", "type": "request", "subject": c.key,
                "time": rfc3339(c.at_ms), "datacontenttype": "application/json",
                "data": {"service": "weather", "method": "GET", "path": path(c),
                    "status": c.status.to_string(), "duration_ms": c.latency_ms.to_string()}
            })).collect()).to_string(),
            Format::Otlp => {
                let string = |key: &str, value: String| json!({"key": key, "value": {"stringValue": value}});
                let records: Vec<Value> = calls.iter().map(|c| json!({
                    "timeUnixNano": format!("{}000000", c.at_ms),
                    "body": {"stringValue": format!("GET {} {}", path(c), c.status)},
                    "attributes": [string("http.request.method", "GET".into()),
                        string("url.path", path(c).into()), string("url.query", "city=paris".into()),
                        string("server.address", "api.example.test".into()),
                        string("http.response.status_code", c.status.to_string()),
                        string("http.request.header.x-api-key", c.key.clone()),
                        string("http.request.header.x-request-id", c.id.clone()),
                        string("duration_ms", c.latency_ms.to_string())]
                })).collect();
                json!({"resourceLogs": [{"resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "envoy-edge"}}]},
                    "scopeLogs": [{"scope": {}, "logRecords": records}]}]}).to_string()
            }
            Format::NginxLog => calls.iter().map(|c| format!("{}\n", nginx(c))).collect(),
            Format::Vector => Value::Array(calls.iter().map(|c| json!({"file": "/var/log/nginx/access.json",
                "host": "edge-1", "message": nginx(c).to_string(), "source_type": "file",
                "timestamp": rfc3339(c.at_ms + 8)})).collect()).to_string(),
            Format::OtlpProtobuf => return otlp_protobuf(calls, path),
        };
        text.into_bytes()
    }

    /// Whether the answer is OTLP's protobuf one (200) rather than tollbooth's JSON (202).
    fn answered_in_protobuf(self) -> bool {
        matches!(self, Format::OtlpProtobuf)
    }
}

/// The calls as the OTLP JSON body holds them, encoded in protobuf.
fn otlp_protobuf(calls: &[Call], path: impl Fn(&Call) -> &'static str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let string = |key: &str, value: String| KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    };
    let records = calls
        .iter()
        .map(|c| LogRecord {
            time_unix_nano: u64::try_from(c.at_ms).unwrap() * 1_000_000,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "GET {} {}",
                    path(c),
                    c.status
                ))),
            }),
            attributes: vec![
                string("http.request.method", "GET".into()),
                string("url.path", path(c).into()),
                string("url.query", "city=paris".into()),
                string("server.address", "api.example.test".into()),
                string("http.response.status_code", c.status.to_string()),
                string("http.request.header.x-api-key", c.key.clone()),
                string("http.request.header.x-request-id", c.id.clone()),
                string("duration_ms", c.latency_ms.to_string()),
            ],
            ..LogRecord::default()
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![string("service.name", "envoy-edge".into())],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    prost::Message::encode_to_vec(&request)
}

fn main() -> Result<()> {
    let binary = server_binary()?;
    let mut records = 100_000;
    let mut only: Option<String> = None;
    let mut repeat = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().unwrap_or_default().parse()?,
            "--only" => only = args.next(),
            "--repeat" => repeat = args.next().unwrap_or_default().parse::<usize>()?.max(1),
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!("ingestion per sender format: {records} records, bodies of {PER_BODY}, {CONNECTIONS} connections, SQLite, each format paired with a baseline run {repeat} times\n");
        println!("| format | body bytes a record | records/s | baseline records/s, just before | median ratio (goal ≥ 0.8) | every ratio | server CPU µs a record: format / baseline (median baseline ÷ format) |");
        println!("|---|---|---|---|---|---|---|");
        for format in Format::ALL {
            if matches!(format, Format::Tollbooth) {
                continue;
            }
            let wanted = only.as_ref().is_none_or(|o| format.label().to_lowercase().contains(o));
            if !wanted {
                continue;
            }
            // The baseline again right before each run of a format: this machine's speed drifts
            // within a run. The pair is measured `repeat` times; the median ratio is reported.
            let mut pairs = Vec::new();
            let mut bytes = 0;
            for _ in 0..repeat {
                let base = measure(&binary, Format::Tollbooth, records).await?;
                let run = measure(&binary, format, records).await?;
                bytes = run.bytes;
                pairs.push((run.rate / base.rate, run, base));
            }
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ratio, run, base) = &pairs[pairs.len() / 2];
            let ratios: Vec<String> = pairs.iter().map(|p| format!("{:.2}", p.0)).collect();
            let mut cpu: Vec<f64> = pairs.iter().map(|(_, r, b)| b.cpu_us / r.cpu_us).collect();
            cpu.sort_by(f64::total_cmp);
            let verdict = if *ratio >= 0.8 { "met" } else { "**not met**" };
            println!(
                "| {} | {bytes} | {} | {} | {ratio:.2}: {verdict} | {} | {:.1} / {:.1} ({:.2}) |",
                format.label(),
                thousands(run.rate),
                thousands(base.rate),
                ratios.join(", "),
                run.cpu_us,
                base.cpu_us,
                cpu[cpu.len() / 2]
            );
        }
        Ok(())
    })
}

async fn measure(binary: &std::path::Path, format: Format, records: usize) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let database = FreshDatabase::create(Database::Sqlite, None, dir.path(), "formats").await?;
    let server = Server::start(binary, &database.url, dir.path())?;
    let client = reqwest::Client::new();
    server.wait_ready(&client).await?;
    let base = server.base.clone();
    admin_post(
        &client,
        &base,
        "/v1/apis",
        json!({"slug": "weather", "name": "Weather", "path_prefixes": ["/weather/"]}),
    )
    .await?;
    admin_post(
        &client,
        &base,
        "/v1/tiers",
        json!({"slug": "pro", "api": "weather", "name": "Pro",
        "currency": "usd", "usage": {"model": "per_unit", "unit_price": "0.001"}}),
    )
    .await?;
    for i in 0..SUBSCRIPTIONS {
        admin_post(
            &client,
            &base,
            "/v1/subscribers",
            json!({"external_id": format!("s{i}"),
            "name": format!("S {i}"), "email": format!("s{i}@example.com")}),
        )
        .await?;
        admin_post(
            &client,
            &base,
            "/v1/subscriptions",
            json!({"external_id": format!("s{i}-pro"),
            "subscriber": format!("s{i}"), "tier": "pro", "consumer_keys": [format!("key-{i}")]}),
        )
        .await?;
    }
    let gateway = admin_post(&client, &base, "/v1/gateways", json!({"name": "sender"})).await?;
    let key = gateway["key"].as_str().unwrap_or_default().to_owned();

    let start = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let calls: Vec<Call> = (0..records)
        .map(|i| Call {
            id: uuid::Uuid::now_v7().to_string(),
            key: format!("key-{}", i % SUBSCRIPTIONS),
            at_ms: start + (i as i64 * 3_000_000 / records as i64),
            status: match i % 50 {
                0 | 1 => 503,
                2..=4 => 404,
                _ => 200,
            },
            latency_ms: 20 + (i % 80) as u64,
        })
        .collect();
    let bodies: Vec<Vec<u8>> = calls
        .chunks(PER_BODY)
        .map(|chunk| format.body(chunk))
        .collect();
    let bytes = bodies.iter().map(Vec::len).sum::<usize>() / records;
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let cpu_before = cpu_seconds(server.pid)?;
    let clock = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (queue, client, base, key) = (queue.clone(), client.clone(), base.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                loop {
                    let answer = client
                        .post(format!("{base}{}", format.path()))
                        .bearer_auth(&key)
                        .header("content-type", format.content_type())
                        .body(body.clone())
                        .send()
                        .await?;
                    if answer.status().as_u16() == 503 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let status = answer.status();
                    if format.answered_in_protobuf() {
                        let bytes = answer.bytes().await?;
                        ensure!(status.as_u16() == 200, "{}: {status}", format.label());
                        let answer: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse =
                            prost::Message::decode(&bytes[..])?;
                        ensure!(answer.partial_success.is_none(), "{}: {answer:?}", format.label());
                        break;
                    }
                    let text = answer.text().await?;
                    ensure!(
                        status.as_u16() == 202,
                        "{}: {status} {text}",
                        format.label()
                    );
                    let summary: Value = serde_json::from_str(&text)?;
                    ensure!(
                        summary["rejected"] == json!([]),
                        "{}: {text:.500}",
                        format.label()
                    );
                    break;
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let wall = clock.elapsed();
    let cpu = cpu_seconds(server.pid)? - cpu_before;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let accepted: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tollbooth_gateway_records_total{") && l.contains("outcome=\"accepted\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    ensure!(
        accepted as usize == records,
        "{}: {accepted} accepted of {records}",
        format.label()
    );
    server.stop()?;
    Ok(Measured {
        rate: records as f64 / wall.as_secs_f64(),
        bytes,
        cpu_us: cpu * 1e6 / records as f64,
    })
}

/// One format's run: records/s, body bytes a record, the server's CPU time a record (µs, user
/// and system, all its threads).
struct Measured {
    rate: f64,
    bytes: usize,
    cpu_us: f64,
}

/// The CPU time a process has used so far, in seconds (`/proc/PID/stat`, in clock ticks).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    ensure!(fields.len() > 13, "unreadable /proc/{pid}/stat");
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks()?)
}

/// Clock ticks a second (`getconf CLK_TCK`).
fn clock_ticks() -> Result<f64> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}
