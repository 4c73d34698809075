//! A 409 names what is taken in the catalog's words, however the conflict was found: by
//! tollbooth's own checks, or by a unique rule of the database when two requests race.

use crate::helpers::{TestApp, on_both_databases};
use crate::tiers::{create_weather_api, pro_tier};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_databases!(
    racing_creates_that_take_one_key_are_refused_in_the_catalogs_words,
    a_unique_rule_tollbooth_does_not_know_is_a_plain_conflict,
);

/// Requests sent at once; on PostgreSQL several pass tollbooth's checks before any commits.
const RACERS: usize = 8;
const ROUNDS: usize = 4;

/// A 409 `conflict` whose message names `thing` and says nothing of the database.
fn assert_conflict_naming(answer: &(StatusCode, Value), thing: &str) {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(thing), "names {thing}: {body}");
    for database_word in ["constraint", "duplicate key", "UNIQUE", "violates"] {
        assert!(!message.contains(database_word), "database text: {body}");
    }
}

async fn send_together(app: &TestApp, path: &str, bodies: Vec<Value>) -> Vec<(StatusCode, Value)> {
    futures::future::join_all(bodies.iter().map(|body| app.post(path, body))).await
}

async fn racing_creates_that_take_one_key_are_refused_in_the_catalogs_words(app: TestApp) {
    create_weather_api(&app).await;
    let (status, _) = app.post("/v1/tiers", &pro_tier("5.00")).await;
    assert_eq!(status, StatusCode::CREATED);

    for round in 0..ROUNDS {
        // Subscribers under one external id, each with its own name.
        let external_id = format!("acme-{round}");
        let bodies = (0..RACERS)
            .map(|i| json!({"external_id": external_id, "name": format!("Acme {i}"), "email": "billing@acme.example"}))
            .collect();
        let answers = send_together(&app, "/v1/subscribers", bodies).await;
        let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED);
        assert_eq!(created.count(), 1, "{answers:#?}");
        for answer in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_conflict_naming(answer, &format!("subscriber `{external_id}`"));
        }

        // Subscriptions of that subscriber, each its own, all claiming one consumer key.
        let key = format!("shared-key-{round}");
        let bodies = (0..RACERS)
            .map(|i| {
                json!({"external_id": format!("{external_id}-{i}"), "subscriber": external_id,
                            "tier": "weather-pro", "consumer_keys": [key]})
            })
            .collect();
        let answers = send_together(&app, "/v1/subscriptions", bodies).await;
        let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED);
        assert_eq!(created.count(), 1, "{answers:#?}");
        for answer in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_conflict_naming(answer, &format!("consumer key `{key}`"));
        }
    }
    assert_eq!(app.count_rows("subscribers").await, ROUNDS as i64);
    assert_eq!(app.count_rows("subscriptions").await, ROUNDS as i64);
    assert_eq!(app.count_rows("consumer_keys").await, ROUNDS as i64);
}

async fn a_unique_rule_tollbooth_does_not_know_is_a_plain_conflict(app: TestApp) {
    // A rule added by hand, say by an operator: tollbooth has no words for it.
    app.execute_sql("CREATE UNIQUE INDEX operator_gateway_names ON gateways (name)")
        .await;
    let (status, _) = app.post("/v1/gateways", &json!({"name": "kong"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let answer = app.post("/v1/gateways", &json!({"name": "kong"})).await;
    assert_conflict_naming(&answer, "conflicts with");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    for schema_word in ["gateways", "operator_gateway_names", "kong"] {
        assert!(!message.contains(schema_word), "{}", answer.1);
    }
    assert_eq!(app.count_rows("gateways").await, 1);
}
