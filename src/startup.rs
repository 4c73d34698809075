//! Building and running the service: open the store, migrate, settle the admin token, serve.

use crate::access::AccessBook;
use crate::auth;
use crate::config::Settings;
use crate::http::{self, AppState};
use crate::metering::directory::Directory;
use crate::metering::writer::{Ingestor, WriterLimits};
use crate::notify::Notifier;
use crate::store::{Backend, Store};
use crate::stripe::webhook::WebhookSecrets;
use crate::telemetry;
use anyhow::Context;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Says which Stripe mode the key is in, and warns when the database's Stripe objects were made
/// in the other one (their ids are unknown to this account's mode).
async fn note_stripe_mode(store: &Store, key: &secrecy::SecretString) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let mode = crate::config::stripe_mode(key.expose_secret()).unwrap_or("unknown");
    let mut tx = store.begin().await?;
    tx.set_setting_once("stripe_mode", mode).await?;
    let first = tx.setting("stripe_mode").await?.unwrap_or_default();
    tx.commit().await?;
    if first == mode {
        tracing::info!(mode, "Stripe in {mode} mode");
    } else {
        tracing::warn!(
            mode,
            database_mode = %first,
            "Stripe key is in {mode} mode, but this database first ran with a {first}-mode key: \
             the Customers, Products and Subscriptions it holds do not exist in {mode} mode"
        );
    }
    Ok(())
}

/// A built tollbooth, bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    /// The gRPC server's (Envoy `ext_authz`, OTLP logs), when `grpc_listen` is set.
    grpc_listener: Option<TcpListener>,
    /// The operators' own address for `/metrics`, when `metrics_listen` is set.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    writer: tokio::task::JoinHandle<()>,
    /// The writers' own connections, closed once they have drained.
    writer_store: Store,
    refresh: tokio::task::JoinHandle<()>,
    access_refresh: tokio::task::JoinHandle<()>,
    stats_saving: tokio::task::JoinHandle<()>,
    scheduler: Option<tokio_cron_scheduler::JobScheduler>,
    /// The admin token made at this start, if this start made one: shown once, never again.
    pub new_admin_token: Option<String>,
}

impl Application {
    /// Opens and migrates the database, settles the admin token and binds the listen address
    /// (port 0 picks a free port).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let store = Store::connect(settings.database_url.as_str())
            .await
            .context("opening the database")?;
        store.migrate().await.context("migrating the database")?;
        let (admin_token, new_admin_token) =
            auth::admin_token(&store, settings.admin_token.as_ref())
                .await
                .context("settling the admin token")?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let grpc_listener = match settings.grpc_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address} (grpc_listen)"))?,
            ),
            None => None,
        };
        let metrics_listener = match settings.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address} (metrics_listen)"))?,
            ),
            None => None,
        };
        let directory = Directory::load(store.clone())
            .await
            .context("loading the consumer directory")?;
        let refresh = directory.spawn_refresh(settings.replica_refresh.0);
        let notifier = Notifier::start(store.clone(), settings.notify());
        let access = AccessBook::load(
            store.clone(),
            settings.payment_grace.0,
            settings.decision_hold.0,
            settings.unmirrored_access == crate::config::UnmirroredAccess::Refuse
                && settings.stripe_secret_key.is_some(),
        )
        .await
        .context("loading the access book")?;
        let access_refresh = access.spawn_refresh(settings.replica_refresh.0);
        let counts = access.clone();
        let writers = settings.ingest_writers.unwrap_or(match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        });
        let writer_store = Store::connect_with(
            settings.database_url.as_str(),
            u32::try_from(writers).unwrap_or(u32::MAX).max(1),
        )
        .await
        .context("opening the ingestion writers' connections")?;
        let (ingestor, writer) = Ingestor::start(
            writer_store.clone(),
            WriterLimits {
                queue_records: settings.ingest_queue_records,
                batch_records: settings.ingest_batch_records,
                writers,
            },
            Arc::new(move |increments, meters| counts.record_usage(increments, meters)),
            Some(crate::metering::thresholds::Thresholds {
                notifier: notifier.clone(),
                watch_of: {
                    let book = access.clone();
                    Arc::new(move |id| book.watch_of(id))
                },
            }),
        );
        let stripe =
            crate::stripe::Stripe::from_settings(settings).context("configuring Stripe")?;
        match &settings.stripe_secret_key {
            None => tracing::info!(
                "no STRIPE_SECRET_KEY: ledger mode, Stripe writes wait for `tollbooth stripe sync`"
            ),
            Some(key) => note_stripe_mode(&store, key).await?,
        }
        let scheduler = if settings.billing_enabled {
            Some(
                crate::billing::schedule::start(
                    settings.billing_cron.as_str(),
                    store.clone(),
                    stripe.clone(),
                    settings.retention.0,
                )
                .await
                .context("starting the billing schedule")?,
            )
        } else {
            None
        };
        let ingest_stats = crate::metering::stats::IngestStats::new();
        let stats_saving = ingest_stats.spawn_saving(store.clone());
        let state = AppState {
            ingest_stats,
            stripe,
            store,
            admin_token,
            metrics: telemetry::metrics_handle(),
            settings: Arc::new(settings.clone()),
            directory,
            ingestor,
            access,
            notifier,
            webhook_secrets: WebhookSecrets::parse(settings.stripe_webhook_secret.as_ref()),
        };
        Ok(Self {
            listener,
            grpc_listener,
            metrics_listener,
            state,
            writer,
            writer_store,
            refresh,
            access_refresh,
            stats_saving,
            scheduler,
            new_admin_token,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The gRPC server's port, when `grpc_listen` is set.
    pub fn grpc_port(&self) -> Option<u16> {
        let listener = self.grpc_listener.as_ref()?;
        listener.local_addr().ok().map(|a| a.port())
    }

    /// The port of `metrics_listen`, when it is set.
    pub fn metrics_port(&self) -> Option<u16> {
        let listener = self.metrics_listener.as_ref()?;
        listener.local_addr().ok().map(|a| a.port())
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves until `shutdown` completes, then finishes the requests under way, lets the writer
    /// commit what is queued, and closes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let timeouts = http::serve::ReadTimeouts {
            header: self.state.settings.header_read_timeout.0,
            body: self.state.settings.body_read_timeout.0,
        };
        let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
        let grpc = self.grpc_listener.map(|listener| {
            let ext_authz = http::ext_authz::service(self.state.clone());
            let otlp_logs = http::otlp_grpc::service(self.state.clone());
            let stopped = shutdown.clone();
            tokio::spawn(async move {
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                if let Err(error) = tonic::transport::Server::builder()
                    .add_service(ext_authz)
                    .add_service(otlp_logs)
                    .serve_with_incoming_shutdown(incoming, stopped)
                    .await
                {
                    tracing::error!(%error, "the gRPC server failed");
                }
            })
        });
        let metrics = self.metrics_listener.map(|listener| {
            let router = http::health::metrics_router(self.state.clone());
            let stopped = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(%error, "the metrics server failed");
                }
            })
        });
        let stats = self.state.ingest_stats.clone();
        let app = http::router(self.state);
        http::serve::serve(self.listener, app, timeouts, shutdown).await;
        if let Some(metrics) = metrics
            && let Err(error) = metrics.await
        {
            tracing::error!(%error, "the metrics server failed");
        }
        if let Some(grpc) = grpc
            && let Err(error) = grpc.await
        {
            tracing::error!(%error, "the gRPC server failed");
        }
        // The router, and with it every handle to the queue, is gone: the writer drains and ends.
        self.refresh.abort();
        self.access_refresh.abort();
        self.stats_saving.abort();
        if let Err(error) = stats.save(&store).await {
            tracing::warn!(%error, "gateway ingestion counts not saved at stop");
        }
        if let Some(mut scheduler) = self.scheduler
            && let Err(error) = scheduler.shutdown().await
        {
            tracing::warn!(%error, "the billing schedule did not stop cleanly");
        }
        if let Err(error) = self.writer.await {
            tracing::error!(%error, "the ingestion writer failed");
        }
        self.writer_store.close().await;
        store.close().await;
        Ok(())
    }

    /// Serves until SIGTERM or SIGINT.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stopped = shutdown_signal().context("listening for SIGTERM and SIGINT")?;
        self.run_until(stopped).await
    }
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM at once, so a signal that arrives before the server
/// first waits for it still stops it cleanly, and answers a future that completes on either.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down: finishing requests under way");
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down: finishing requests under way");
    })
}
