//! `bouncewatch serve`: start-up, the background tasks, and a clean stop on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::config::{ensure_generated_secrets, Config};
use crate::http::{self, AppState};
use crate::store::{Store, StoreError};
use crate::telemetry::{self, Metrics};
use crate::tls::{self, CurrentConfig, TlsFiles, TlsListener};

/// How long start-up waits for another process to release the store.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(30);

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    telemetry::init_logs(config.log_format);
    // Installed first, so a SIGTERM during start-up (a long store open, say) still stops the
    // process cleanly instead of killing it.
    let terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let generated = ensure_generated_secrets(&mut config).context("prepare the data directory")?;
    if let Some(path) = &generated.hook_secret_file {
        if generated.created.contains(path) {
            // Printed, not logged: this is for the person starting the service, and it names the
            // file rather than the secret.
            eprintln!(
                "bouncewatch: generated a hook secret in {path}.\n  In Okta's Admin Console (Workflow > Event Hooks), \
                 set the hook's authentication field to `{header}` and its value to the content of that file,\n  \
                 or run `bouncewatch register --url https://<this host>/okta/events`.",
                path = path.display(),
                header = config.hook_auth_header,
            );
        }
    }
    if let Some(path) = &generated.admin_token_file {
        if generated.created.contains(path) {
            eprintln!(
                "bouncewatch: generated an admin token in {}; send it as `Authorization: Bearer <token>` to /api/v1.",
                path.display()
            );
        }
    }

    let store = match Store::open(&config.data_dir, config.durability, STORE_LOCK_WAIT) {
        Ok(store) => store,
        Err(err @ (StoreError::Corrupt(_) | StoreError::Io(_))) => {
            // Okta retries a 5xx but never a refused connection twice, so answer 503 until an
            // operator repairs the store, rather than exiting into a crash loop.
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("listen on {}", config.listen))?;
            return http::unavailable::serve(listener, err.to_string(), shutdown_signal(terminate))
                .await;
        }
        Err(err) => return Err(err.into()),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    crate::store::outbox::set_always_notify_domains(
        config
            .domains
            .iter()
            .filter(|(_, settings)| settings.always_notify)
            .filter_map(|(name, _)| crate::address::normalise_domain(name).ok()),
    );
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let state = AppState::new(config.clone(), store.clone(), metrics.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = crate::background::spawn(state.clone(), stop_rx.clone());

    tracing::info!(
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        dry_run = config.dry_run,
        routes = "GET|POST /okta/events, GET|POST /okta/events/, /api/v1/*, /healthz, /readyz, /metrics",
        "bouncewatch serving"
    );
    let app = http::router(state);
    match tls_files(&config) {
        Some(files) => {
            // Loaded again (validation loaded it once) so a file changed since then is used.
            let server_config = files.load()?;
            let current = CurrentConfig::new(server_config);
            let interval = Duration::from_secs(config.tls_reload_seconds);
            tls::spawn_reloader(files.clone(), current.clone(), interval, metrics.clone())
                .context("install the SIGHUP handler for TLS reloads")?;
            tracing::info!(
                cert = %files.cert.display(),
                reload_seconds = config.tls_reload_seconds,
                "serving HTTPS"
            );
            let listener = TlsListener::start(listener, current, metrics);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal(terminate))
                .await
                .context("serve HTTPS")?;
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal(terminate))
                .await
                .context("serve HTTP")?;
        }
    }

    tracing::info!("stopping: waiting for background tasks");
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    store.flush().await.context("flush the store")?;
    tracing::info!("stopped");
    Ok(())
}

fn tls_files(config: &Config) -> Option<TlsFiles> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    }
}

async fn shutdown_signal(mut terminate: Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown signal received");
}
