//! Property targets for every parser that reads outside input — the call-record body, the catalog
//! file, the webhook signature and event — run with `cargo test --lib fuzz::`: on any input, no
//! panic, and every refusal a clean error that says something. `PROPTEST_CASES` sets how many
//! inputs each property tries (256 by default; CI runs more).

use crate::catalog::file::CatalogFile;
use crate::domain::ingest::GatewayIngest;
use crate::metering::formats::{Endpoint, read};
use crate::metering::record::units_micros;
use crate::stripe::webhook::{StripeEvent, WebhookSecrets, sign};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::Value;

/// JSON documents of any shape, biased toward the fields the parsers read.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("2026-11-22T10:00:00Z"),
            Just("9000000000000"),
            Just("0.0000001"),
            Just("-1"),
            Just("\u{0}"),
            Just("1e400"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        let key = prop_oneof![
            Just("id".to_owned()),
            Just("consumer".to_owned()),
            Just("api".to_owned()),
            Just("timestamp".to_owned()),
            Just("status".to_owned()),
            Just("units".to_owned()),
            Just("path".to_owned()),
            Just("method".to_owned()),
            Just("latency_ms".to_owned()),
            Just("response_headers".to_owned()),
            Just("x-usage-units".to_owned()),
            Just("slug".to_owned()),
            Just("name".to_owned()),
            Just("usage".to_owned()),
            Just("model".to_owned()),
            Just("type".to_owned()),
            Just("data".to_owned()),
            Just("object".to_owned()),
            "\\PC{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body as a gateway might send it: JSON, NDJSON, or bytes cut anywhere.
fn record_body() -> impl Strategy<Value = String> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        prop::collection::vec(json_value(), 0..5).prop_map(|lines| {
            lines
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let text = v.to_string();
            let at = cut.index(text.len() + 1);
            text.char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .find(|i| *i >= at)
                .map_or(text.clone(), |i| text[..i].to_owned())
        }),
        "\\PC{0,64}",
    ]
}

const REJECTION_CODES: [&str; 2] = ["invalid_record", "invalid_units"];

proptest! {
    #[test]
    fn the_call_record_parser_refuses_cleanly(body in record_body()) {
        // Every format tollbooth reads, as `auto` tells them apart.
        match read(&body, Endpoint::Events, &GatewayIngest::default()) {
            Err(error) => prop_assert!(!error.message.is_empty() && error.line >= 1),
            Ok(reads) => {
                for read in reads {
                    let checked = read.and_then(|record| {
                        units_micros(&record, Some("x-usage-units"))
                    });
                    if let Err(rejection) = checked {
                        prop_assert!(REJECTION_CODES.contains(&rejection.code), "{rejection:?}");
                        prop_assert!(!rejection.message.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn the_catalog_file_parser_refuses_cleanly(
        text in prop_oneof![
            json_value().prop_map(|v| v.to_string()),
            json_value().prop_map(|v| serde_norway::to_string(&v).unwrap_or_default()),
            "\\PC{0,80}",
        ]
    ) {
        if let Err(error) = CatalogFile::parse(&text) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn the_webhook_signature_check_refuses_cleanly(
        header in prop_oneof![
            "\\PC{0,60}",
            (any::<i64>(), "[0-9a-f]{0,70}").prop_map(|(t, v1)| format!("t={t},v1={v1}")),
            "(t|v1|v0)=[0-9a-f-]{0,20}(,(t|v1)=[0-9a-z-]{0,20}){0,3}",
        ],
        body in prop::collection::vec(any::<u8>(), 0..64),
        now in any::<i64>(),
    ) {
        let secrets = WebhookSecrets::parse(Some(&SecretString::from("whsec_test".to_owned())));
        let secrets = secrets.ok_or_else(|| TestCaseError::fail("secrets"))?;
        if let Err(error) = secrets.verify(Some(&header), &body, now) {
            prop_assert!(!error.to_string().is_empty());
        }
        if let Err(message) = StripeEvent::parse(&body) {
            prop_assert!(!message.is_empty());
        }
    }

    #[test]
    fn a_signed_body_verifies_and_any_changed_byte_does_not(
        body in prop::collection::vec(any::<u8>(), 1..64),
        flip in any::<prop::sample::Index>(),
        timestamp in 0_i64..4_000_000_000,
    ) {
        let secrets = WebhookSecrets::parse(Some(&SecretString::from("whsec_test".to_owned())))
            .ok_or_else(|| TestCaseError::fail("secrets"))?;
        let header = format!("t={timestamp},v1={}", hex::encode(sign("whsec_test", timestamp, &body)));
        prop_assert!(secrets.verify(Some(&header), &body, timestamp).is_ok());
        let mut changed = body.clone();
        let at = flip.index(changed.len());
        changed[at] ^= 0x01;
        prop_assert!(secrets.verify(Some(&header), &changed, timestamp).is_err());
    }
}
