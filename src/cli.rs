//! The command line: `serve`, `migrate`, `purge`, `catalog apply FILE`, `billing run`,
//! `stripe sync`, `admin-token rotate`, `health`.

use crate::catalog::{CatalogFile, apply_file_with};
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
#[command(
    version,
    about,
    after_help = "Settings come from TOLLBOOTH_* environment variables or --config FILE: --help lists them.",
    after_long_help = crate::config::environment_help()
)]
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
    #[command(after_long_help = crate::config::environment_help())]
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
    /// The admin API's bearer token.
    #[command(name = "admin-token")]
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// From "it serves" to "it bills": on a fresh SQLite file, apply the example catalog, post a
    /// day of calls through the real ingestion path, run the billing job in ledger mode, and print
    /// the invoice preview and what to look at next.
    Demo {
        /// The SQLite file to make; it must not exist yet.
        #[arg(long, value_name = "FILE", default_value = "tollbooth-demo.db")]
        database: PathBuf,
    },
    /// Ask a running tollbooth whether it is ready (`GET /readyz` on `listen`): exit 0 when it
    /// is, 1 with the reason when not. For a container's HEALTHCHECK.
    Health {
        /// Give up after this long, such as 3s.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: crate::config::HumanDuration,
    },
}

#[derive(Debug, Subcommand)]
enum AdminTokenCommand {
    /// Make a new admin token, print it once, and end the old one for good (running replicas
    /// refuse it within a second).
    Rotate,
}

fn parse_duration(text: &str) -> Result<crate::config::HumanDuration, String> {
    crate::config::HumanDuration::try_from(text)
}

#[derive(Debug, Subcommand)]
enum BillingCommand {
    /// Run the days that are due, up to today or `--as-of` (UTC), each once.
    Run {
        /// The last day to bill, in UTC (default today); every earlier day not billed yet runs
        /// first. It cannot be after today.
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
    Apply {
        /// The catalog: a YAML or JSON file (see examples/catalog.yaml).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print what would be created and updated, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also archive the apis, tiers and subscribers the file does not list (as the admin
        /// API's DELETE does); refused, and nothing applied, while a live subscription depends on
        /// one of them.
        #[arg(long)]
        prune: bool,
    },
    /// Write the current catalog as a file that `catalog apply` takes back changing nothing:
    /// apis, tiers (newest versions), subscribers, and live subscriptions with their consumer
    /// keys by hash (tollbooth keeps no key). Archived and canceled rows are left out.
    Export {
        /// Where to write it (YAML); standard output when absent.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
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
                command:
                    CatalogCommand::Apply {
                        file,
                        dry_run,
                        prune,
                    },
            } => {
                let options = crate::catalog::ApplyOptions { dry_run, prune };
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let catalog = CatalogFile::parse(&text).map_err(|error| {
                    anyhow::anyhow!("{} was not applied: {error}", file.display())
                })?;
                let store = open_store(&settings).await?;
                if dry_run {
                    let report = apply_file_with(&store, &catalog, options, None)
                        .await
                        .with_context(|| format!("{} would not apply", file.display()))?;
                    print!("{report}");
                    println!(
                        "dry run: nothing was written{}",
                        if report.changed() {
                            ""
                        } else {
                            "; nothing would change"
                        }
                    );
                    return Ok(());
                }
                // Its catalog events go to the outbox; a serving tollbooth delivers them.
                let notifier = crate::notify::Notifier::outbox(store.clone(), settings.notify());
                let events = crate::catalog::CatalogEvents {
                    notifier: &notifier,
                    render: &crate::http::catalog_view,
                };
                let report = apply_file_with(&store, &catalog, options, Some(&events))
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
            Command::Catalog {
                command: CatalogCommand::Export { output },
            } => {
                let store = open_store(&settings).await?;
                let file = crate::catalog::export_file(&store).await?;
                let text = format!(
                    "# tollbooth catalog, exported {}; apply it with `tollbooth catalog apply FILE`.\n\
                     # Consumer keys are written by their SHA-256: tollbooth keeps no key.\n{}",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    serde_norway::to_string(&file)?
                );
                match output {
                    Some(path) => {
                        std::fs::write(&path, text)
                            .with_context(|| format!("writing {}", path.display()))?;
                        eprintln!(
                            "wrote {}: {} apis, {} tiers, {} subscribers, {} subscriptions",
                            path.display(),
                            file.apis.len(),
                            file.tiers.len(),
                            file.subscribers.len(),
                            file.subscriptions.len()
                        );
                    }
                    None => print!("{text}"),
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
                let reports = job.run_due(day).await?;
                let mut failed = 0;
                for report in &reports {
                    failed += report.failures.len();
                    println!("{}", serde_json::to_string(report)?);
                }
                // The reports are the JSON on stdout; what they add up to is for the reader.
                eprintln!("{}", billing_summary(day, &reports));
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
            Command::AdminToken {
                command: AdminTokenCommand::Rotate,
            } => {
                if settings.admin_token.is_some() {
                    anyhow::bail!(
                        "admin_token is set (TOLLBOOTH_ADMIN_TOKEN or the config file): each start puts that \
                         token back, so rotating here would not last. Set a new value there and restart instead"
                    );
                }
                let store = open_store(&settings).await?;
                let token = crate::auth::rotate_admin_token(&store).await?;
                println!("admin token (shown once, keep it safe): {token}");
                eprintln!(
                    "the previous admin token no longer works (running replicas refuse it within a second)"
                );
                Ok(())
            }
            Command::Health { timeout } => health(&settings, timeout.0).await,
            Command::Demo { database } => {
                print!("{}", crate::demo::run(&database).await?);
                Ok(())
            }
        }
    }
}

/// One line on what a billing run did, or that no day was due.
fn billing_summary(day: chrono::NaiveDate, reports: &[crate::billing::RunReport]) -> String {
    let ran: Vec<_> = reports.iter().filter(|r| r.outcome == "done").collect();
    if ran.is_empty() {
        let skipped = reports.len();
        return match skipped {
            0 => format!("billing run: nothing due; every day up to {day} is billed"),
            _ => format!(
                "billing run: nothing due; {skipped} days up to {day} were billed already or are being billed by another runner"
            ),
        };
    }
    let sum = |f: fn(&crate::billing::RunReport) -> u64| ran.iter().map(|r| f(r)).sum::<u64>();
    let failures: usize = reports.iter().map(|r| r.failures.len()).sum();
    format!(
        "billing run: billed {} ({} to {}): {} subscription reports, {} periods closed, \
         {} invoice items created, {} updated, {} late items, {failures} failures",
        match ran.len() {
            1 => "1 day".to_owned(),
            days => format!("{days} days"),
        },
        ran[0].day,
        ran[ran.len() - 1].day,
        sum(|r| r.subscriptions_reported),
        sum(|r| r.cycles_closed),
        sum(|r| r.items_created),
        sum(|r| r.items_updated),
        sum(|r| r.late_items),
    )
}

/// `tollbooth health`: whether the tollbooth on `listen` answers `/readyz` with 200.
async fn health(settings: &Settings, timeout: std::time::Duration) -> anyhow::Result<()> {
    let mut address = settings.listen;
    if address.ip().is_unspecified() {
        // Bound to every interface: ask over loopback of the same family.
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{address}/readyz");
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let answer = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("tollbooth is not answering on {url}"))?;
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("tollbooth is not ready ({url} answered {status}): {body}");
    }
    println!("ready: {url} answered {status}");
    Ok(())
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
