//! The command line: `serve`, `migrate`, `purge`, `catalog apply FILE`, `stripe sync`.

use crate::catalog::{CatalogFile, apply_file};
use crate::config::Settings;
use crate::startup::Application;
use crate::store::Store;
use crate::stripe::Stripe;
use crate::telemetry;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// tollbooth: charge for your API through Stripe.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// A TOML file of settings; environment variables override it.
    #[arg(long, global = true, env = "TOLLBOOTH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (migrates the database first).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Delete raw call records older than the retention window (aggregates are kept).
    Purge,
    /// Work with the declarative catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// The daily billing job.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Work with the Stripe mirror.
    Stripe {
        #[command(subcommand)]
        command: StripeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BillingCommand {
    /// Run the days that are due, up to today or `--as-of` (UTC), each once.
    Run {
        #[arg(long, value_name = "YYYY-MM-DD")]
        as_of: Option<chrono::NaiveDate>,
    },
}

#[derive(Debug, Subcommand)]
enum StripeCommand {
    /// Send every Stripe write still owed (ledger-mode rows, failed mirrors), once each.
    Sync,
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Create or bring in line the apis, tiers, subscribers and subscriptions of a YAML or JSON file.
    Apply { file: PathBuf },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        let settings = Settings::load(self.config.as_deref())?;
        telemetry::init_logging(settings.log_format);
        match self.command {
            Command::Serve => serve(&settings).await,
            Command::Migrate => {
                open_store(&settings).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Purge => {
                let store = open_store(&settings).await?;
                let deleted = crate::metering::purge_expired(
                    &store,
                    settings.retention.0,
                    crate::store::now_ms(),
                )
                .await?;
                println!("purged {deleted} raw call records older than the retention window");
                Ok(())
            }
            Command::Catalog {
                command: CatalogCommand::Apply { file },
            } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let catalog = CatalogFile::parse(&text)
                    .with_context(|| format!("{} was not applied", file.display()))?;
                let store = open_store(&settings).await?;
                let report = apply_file(&store, &catalog)
                    .await
                    .with_context(|| format!("{} was not applied", file.display()))?;
                print!("{report}");
                if !report.changed() {
                    println!("nothing changed");
                }
                let stripe = Stripe::from_settings(&settings)?;
                if stripe.is_live() {
                    print_sync(&stripe.sync(&store).await?)?;
                }
                Ok(())
            }
            Command::Billing {
                command: BillingCommand::Run { as_of },
            } => {
                let store = open_store(&settings).await?;
                let stripe = Stripe::from_settings(&settings)?;
                let owner = crate::domain::ids::new_id("runner");
                let job = crate::billing::BillingJob {
                    store: &store,
                    stripe: &stripe,
                    owner: &owner,
                    retention: settings.retention.0,
                    lease: crate::billing::schedule::LEASE,
                };
                let today = chrono::Utc::now().date_naive();
                let day = as_of.unwrap_or(today);
                if day > today {
                    // A day ahead would be marked done before its usage exists.
                    anyhow::bail!("--as-of {day} is after today ({today}, UTC)");
                }
                let mut failed = 0;
                for report in job.run_due(day).await? {
                    failed += report.failures.len();
                    println!("{}", serde_json::to_string(&report)?);
                }
                if failed > 0 {
                    anyhow::bail!(
                        "{failed} subscriptions could not be billed; the next run retries them"
                    );
                }
                Ok(())
            }
            Command::Stripe {
                command: StripeCommand::Sync,
            } => {
                let stripe = Stripe::from_settings(&settings)?;
                if !stripe.is_live() {
                    anyhow::bail!(
                        "STRIPE_SECRET_KEY is not set: there is no Stripe account to sync with"
                    );
                }
                let store = open_store(&settings).await?;
                print_sync(&stripe.sync(&store).await?)
            }
        }
    }
}

/// Prints what a sync did; intents that still fail make the command fail.
fn print_sync(report: &crate::stripe::SyncReport) -> anyhow::Result<()> {
    println!(
        "stripe sync: {} written, {} failed",
        report.done, report.failed
    );
    for (key, error) in &report.errors {
        println!("  {key}: {error}");
    }
    if report.failed > 0 {
        anyhow::bail!(
            "{} Stripe writes failed; they stay pending and are retried by the next sync",
            report.failed
        );
    }
    Ok(())
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(settings.database_url.as_str())
        .await
        .context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    if let Some(token) = &app.new_admin_token {
        // Printed once, on stdout, so it can be captured; only its hash is kept.
        println!("admin token (shown once, keep it safe): {token}");
    }
    tracing::info!(listen = %settings.listen, port = app.port(), backend = ?app.store().backend(), "tollbooth serving");
    app.run_until_stopped().await
}
