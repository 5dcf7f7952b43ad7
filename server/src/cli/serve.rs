//! `salvage serve`.

use crate::config::Settings;
use crate::startup::{self, Application};

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(&settings).await?;
    startup::spawn_schema_task(application.state().clone(), settings.cron_secret.clone());
    if settings.crons.scheduler {
        crate::scheduler::spawn(application.state().clone());
    } else {
        tracing::info!("SALVAGE_SCHEDULER=off: jobs run only when /cron/<job> is called");
    }
    startup::spawn_setup_link_task(application.state().clone(), settings.public_url.clone());
    startup::spawn_session_cleanup(application.state().clone());
    startup::spawn_depth_sampler(application.state().clone());
    startup::spawn_history_anchoring(application.state().clone());
    startup::spawn_key_usage(application.state().clone());
    startup::spawn_postgres_watch(application.state().clone());
    let site = match (&settings.site_root, crate::site::files().len()) {
        (Some(folder), _) => format!("from {folder} (LEPTOS_SITE_ROOT)"),
        (None, 0) => "from target/site (this binary has no embedded site)".to_owned(),
        (None, files) => format!("embedded ({files} files)"),
    };
    tracing::info!(
        address = %settings.addr,
        site = %site,
        console = %settings.public_url.join("admin").map(|u| u.to_string()).unwrap_or_default(),
        "Salvage is serving"
    );
    application
        .run_until_stopped(shutdown_signal(), settings.shutdown_grace)
        .await?;
    tracing::info!("Salvage stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
