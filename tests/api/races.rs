//! Real tollbooth processes started together on one database, as a deployment does: several
//! replicas and a `catalog apply` job at once.

use crate::helpers::{Backend, TestApp, fresh_database, on_both_backends, spawn_app, spawn_app_on};
use reqwest::StatusCode;
use std::process::{Child, Command, Output, Stdio};

on_both_backends!(
    migrate_and_catalog_apply_started_together_on_a_fresh_database_all_succeed,
    catalog_applies_of_one_file_at_once_all_succeed_and_write_it_once,
);

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/catalog.yaml");

/// Each round is a new database: the race is over the first migration and the first rows.
const ROUNDS: usize = 4;

fn start(database_url: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .args(args)
        .env("TOLLBOOTH_DATABASE_URL", database_url)
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollbooth")
}

/// Starts every command at once and waits for all of them; each must exit 0.
fn run_together(database_url: &str, commands: &[&[&str]]) -> Vec<String> {
    let children: Vec<Child> = commands
        .iter()
        .map(|args| start(database_url, args))
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output().expect("wait for tollbooth"))
        .collect();
    let mut stdouts = Vec::new();
    for (args, output) in commands.iter().zip(outputs) {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "`tollbooth {}` exited with {}:\n{stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdouts.push(stdout);
    }
    stdouts
}

/// Of the applies, exactly one wrote the file and every other found nothing to change.
fn assert_one_apply_wrote(stdouts: &[String]) {
    let writers = stdouts
        .iter()
        .filter(|out| !out.contains("nothing changed"))
        .count();
    assert_eq!(writers, 1, "{stdouts:#?}");
    assert!(
        stdouts
            .iter()
            .any(|out| out.contains("tiers: 3 created, 0 updated, 0 unchanged")),
        "{stdouts:#?}"
    );
}

/// The example catalog is there once: one row of each entry, each tier at its first version.
async fn assert_example_catalog_once(app: &TestApp) {
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    for (table, rows) in [
        ("apis", 1),
        ("tiers", 3),
        ("tier_versions", 3),
        ("subscribers", 1),
        ("subscriptions", 1),
        ("consumer_keys", 1),
        ("subscription_tiers", 1),
    ] {
        assert_eq!(app.count_rows(table).await, rows, "rows in {table}");
    }
    let (status, subscription) = app.get("/v1/subscriptions/acme-weather").await;
    assert_eq!(status, StatusCode::OK, "{subscription}");
    assert_eq!(subscription["tier"], "weather-pro");
    assert_eq!(subscription["consumer_keys"][0], "acm…");
}

async fn migrate_and_catalog_apply_started_together_on_a_fresh_database_all_succeed(
    backend: Backend,
) {
    let apply: &[&str] = &["catalog", "apply", EXAMPLE];
    let migrate: &[&str] = &["migrate"];
    for _ in 0..ROUNDS {
        let database = fresh_database(backend).await.expect("a fresh database");
        let stdouts = run_together(&database.url, &[migrate, apply, migrate, apply]);
        assert_one_apply_wrote(&[stdouts[1].clone(), stdouts[3].clone()]);
        let mut app = spawn_app_on(&database.url).await;
        assert_example_catalog_once(&app).await;
        app.stop().await;
    }
}

async fn catalog_applies_of_one_file_at_once_all_succeed_and_write_it_once(backend: Backend) {
    let apply: &[&str] = &["catalog", "apply", EXAMPLE];
    for _ in 0..ROUNDS {
        let mut app = spawn_app(backend).await.expect("a fresh database");
        let stdouts = run_together(&app.database_url, &[apply, apply, apply, apply]);
        assert_one_apply_wrote(&stdouts);
        assert_example_catalog_once(&app).await;
        app.stop().await;
    }
}
