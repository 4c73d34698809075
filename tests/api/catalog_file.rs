use crate::helpers::{TestApp, on_both_databases};
use reqwest::StatusCode;
use serde_json::Value;
use std::process::Output;

on_both_databases!(
    the_example_catalog_applies_reads_back_and_reapplies_as_no_change,
    a_bad_catalog_file_names_the_entry_and_changes_nothing,
    a_dry_run_says_what_would_change_and_writes_nothing,
    an_export_applies_back_as_no_change_and_holds_no_key,
    prune_archives_what_the_file_left_out_unless_it_is_in_use,
);

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/catalog.yaml");

pub(crate) fn apply(app: &TestApp, file: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .args(["catalog", "apply", file])
        .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .output()
        .expect("run tollbooth catalog apply")
}

/// Every field the file wrote is in what the API answers, with the same value.
pub(crate) fn assert_written_back(written: &Value, answered: &Value, at: &str) {
    match written {
        Value::Object(fields) => {
            for (key, value) in fields {
                let answer = answered
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} missing in {answered}"));
                assert_written_back(value, answer, &format!("{at}.{key}"));
            }
        }
        Value::Array(items) => {
            let answers = answered
                .as_array()
                .unwrap_or_else(|| panic!("{at} is not a list: {answered}"));
            assert_eq!(items.len(), answers.len(), "{at}");
            for (i, (item, answer)) in items.iter().zip(answers).enumerate() {
                assert_written_back(item, answer, &format!("{at}[{i}]"));
            }
        }
        // A consumer key is answered by its first characters only (it is kept as a hash).
        Value::String(key) if at.contains(".consumer_keys[") => assert_eq!(
            answered,
            &Value::String(tollbooth::domain::subscription::shown(key)),
            "{at}"
        ),
        scalar => assert_eq!(scalar, answered, "{at}"),
    }
}

async fn the_example_catalog_applies_reads_back_and_reapplies_as_no_change(app: TestApp) {
    let first = apply(&app, EXAMPLE);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("tiers: 3 created, 0 updated, 0 unchanged"),
        "{stdout}"
    );

    let file: Value = serde_norway::from_str(&std::fs::read_to_string(EXAMPLE).unwrap()).unwrap();
    for (kind, key) in [
        ("apis", "slug"),
        ("tiers", "slug"),
        ("subscribers", "external_id"),
        ("subscriptions", "external_id"),
    ] {
        for entry in file[kind].as_array().unwrap() {
            let id = entry[key].as_str().unwrap();
            let (status, answered) = app.get(&format!("/v1/{kind}/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{kind}/{id}: {answered}");
            assert_written_back(entry, &answered, &format!("{kind}/{id}"));
        }
    }
    let snapshot = app.catalog_snapshot().await;

    let second = apply(&app, EXAMPLE);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert_eq!(app.catalog_snapshot().await, snapshot);
}

async fn a_bad_catalog_file_names_the_entry_and_changes_nothing(app: TestApp) {
    assert!(apply(&app, EXAMPLE).status.success());
    let before = app.catalog_snapshot().await;
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();

    // A type error inside an entry.
    let bad_type = dir.path().join("bad-type.yaml");
    std::fs::write(
        &bad_type,
        example.replace("package_size: 1000", "package_size: lots"),
    )
    .unwrap();
    let output = apply(&app, bad_type.to_str().unwrap());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("tiers[1] (weather-pro): usage.package_size"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("usage.package_size").count(),
        1,
        "the field is named once: {stderr}"
    );

    // A reference to a tier that does not exist, after entries that would otherwise change.
    let bad_reference = dir.path().join("bad-reference.yaml");
    let text = example
        .replace("name: Acme Corp", "name: Acme Renamed")
        .replace("tier: weather-pro", "tier: weather-gold");
    std::fs::write(&bad_reference, text).unwrap();
    let output = apply(&app, bad_reference.to_str().unwrap());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("subscriptions[0] (acme-weather): tier:"),
        "{stderr}"
    );
    assert!(stderr.contains("weather-gold"), "{stderr}");

    assert_eq!(app.catalog_snapshot().await, before);
}

/// `catalog apply --dry-run` names each entry it would create or update and writes nothing (no
/// catalog row, no Stripe write queued); after a real apply it says nothing would change.
async fn a_dry_run_says_what_would_change_and_writes_nothing(app: TestApp) {
    let dry_run = |app: &TestApp| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tollbooth"))
            .args(["catalog", "apply", "--dry-run", EXAMPLE])
            .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
            .env_remove("TOLLBOOTH_ADMIN_TOKEN")
            .output()
            .expect("run tollbooth catalog apply --dry-run")
    };
    let before = app.catalog_snapshot().await;
    let output = dry_run(&app);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for wanted in [
        "tiers: 3 created, 0 updated, 0 unchanged",
        "tiers weather-pro: created",
        "subscriptions acme-weather: created",
        "dry run: nothing was written",
    ] {
        assert!(stdout.contains(wanted), "{wanted}: {stdout}");
    }
    assert_eq!(app.catalog_snapshot().await, before);
    assert_eq!(app.count_rows("stripe_intents").await, 0);

    assert!(apply(&app, EXAMPLE).status.success());
    let output = dry_run(&app);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("dry run: nothing was written; nothing would change"),
        "{stdout}"
    );
}

/// `catalog export` writes what `catalog apply` takes back changing nothing, with the consumer keys
/// by their hash; a key known by its hash only is the key itself to the gateway's records.
async fn an_export_applies_back_as_no_change_and_holds_no_key(app: TestApp) {
    assert!(apply(&app, EXAMPLE).status.success());
    let snapshot = app.catalog_snapshot().await;
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("exported.yaml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .args(["catalog", "export", "--output", exported.to_str().unwrap()])
        .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("3 tiers, 1 subscribers, 1 subscriptions"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(!text.contains("acme-app-1"), "the key itself: {text}");
    let file: Value = serde_norway::from_str(&text).unwrap();
    let example: Value =
        serde_norway::from_str(&std::fs::read_to_string(EXAMPLE).unwrap()).unwrap();
    // What the example wrote, with the defaults it left out written in.
    for kind in ["apis", "tiers", "subscribers"] {
        assert_written_back(&example[kind], &file[kind], kind);
    }
    let subscription = &file["subscriptions"][0];
    assert_eq!(subscription["external_id"], "acme-weather");
    assert_eq!(
        subscription["consumer_key_hashes"][0]["sha256"],
        tollbooth::auth::hash_secret("acme-app-1")
    );

    let again = apply(&app, exported.to_str().unwrap());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert_eq!(app.catalog_snapshot().await, snapshot);

    // A key given by its hash only (as an export holds it) counts the calls made with it.
    let hash = tollbooth::auth::hash_secret("acme-app-9");
    let (status, answer) = app
        .post(
            "/v1/subscriptions",
            &serde_json::json!({"external_id": "acme-weather-9", "subscriber": "acme",
                "tier": "weather-pro",
                "consumer_key_hashes": [{"sha256": hash, "prefix": "acme-…"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["consumer_keys"],
        serde_json::json!(["acme-…"]),
        "{answer}"
    );
    let answer = app
        .post(
            "/v1/subscriptions",
            &serde_json::json!({"external_id": "acme-weather-10", "subscriber": "acme",
                "tier": "weather-pro", "consumer_key_hashes": [{"sha256": "ABC"}]}),
        )
        .await;
    crate::helpers::assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("consumer_key_hashes[0].sha256"),
    );
    let gateway = crate::forward_auth::gateway(&app, "nginx", serde_json::json!({})).await;
    let (status, decision) =
        crate::forward_auth::ask(&app, &gateway, "acme-app-9", "weather").await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["tier"], "weather-pro", "{decision}");
}

/// `catalog apply --prune` archives what the file does not list, as `DELETE` does, and applies
/// nothing while a live subscription depends on one of those.
async fn prune_archives_what_the_file_left_out_unless_it_is_in_use(app: TestApp) {
    assert!(apply(&app, EXAMPLE).status.success());
    let dir = tempfile::tempdir().unwrap();
    let example: Value =
        serde_norway::from_str(&std::fs::read_to_string(EXAMPLE).unwrap()).unwrap();
    let without = |slug: &str| {
        let mut file = example.clone();
        file["tiers"]
            .as_array_mut()
            .unwrap()
            .retain(|tier| tier["slug"] != slug);
        let path = dir.path().join(format!("without-{slug}.yaml"));
        std::fs::write(&path, serde_norway::to_string(&file).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tollbooth"))
            .args(args)
            .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
            .env_remove("TOLLBOOTH_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let before = app.catalog_snapshot().await;

    // `acme-weather` is live on weather-pro: leaving that tier out refuses the whole file.
    let in_use = without("weather-pro");
    let refused = run(&["catalog", "apply", "--prune", &in_use]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("tiers weather-pro (not in the file, so pruned)")
            && stderr.contains("1 live subscription(s) (acme-weather)"),
        "{stderr}"
    );
    assert_eq!(app.catalog_snapshot().await, before);

    // weather-scale has none: a dry run names it and writes nothing; the apply archives it.
    let unused = without("weather-scale");
    let dry = run(&["catalog", "apply", "--prune", "--dry-run", &unused]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{stdout}");
    assert!(stdout.contains("tiers weather-scale: archived"), "{stdout}");
    assert_eq!(app.catalog_snapshot().await, before);
    let pruned = run(&["catalog", "apply", "--prune", &unused]);
    let stdout = String::from_utf8_lossy(&pruned.stdout);
    assert!(pruned.status.success(), "{stdout}");
    assert!(
        stdout.contains("tiers: 0 created, 0 updated, 2 unchanged, 1 archived"),
        "{stdout}"
    );
    let (_, tiers) = app.get("/v1/tiers").await;
    let slugs: Vec<&str> = tiers["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs.len(), 2, "{tiers}");
    assert!(!slugs.contains(&"weather-scale"), "{tiers}");
    // Without --prune, what the file leaves out is kept; the whole file again restores it.
    let again = run(&["catalog", "apply", EXAMPLE]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("tiers weather-scale: updated"), "{stdout}");
    let (_, scale) = app.get("/v1/tiers/weather-scale").await;
    assert!(scale.get("archived_at").is_none(), "{scale}");
}
