//! The demo's webhooks and their dead letters (`salvage demo`).

use time::OffsetDateTime;

use crate::config::Settings;

/// Two webhooks to the demo receiver that `salvage serve` runs with
/// `SALVAGE_DEMO_RECEIVER` ("Orders" recovers a few minutes after the console starts,
/// "Billing" stays down), and real dead letters for them: events sent while the console
/// is not running (connection refused), each allowed one attempt for this first round.
/// Once the console has run a few minutes, a redrive of "Orders" delivers. Only when no
/// webhook exists yet.
pub async fn dead_letters(
    state: &app::server::AppState,
    settings: &Settings,
) -> anyhow::Result<Option<String>> {
    use app::dead_letters::ssr::{deliver, endpoints, ingest};
    let any: bool = sqlx::query_scalar("select exists (select 1 from webhooks)")
        .fetch_one(&state.pg)
        .await?;
    if any {
        return Ok(None);
    }
    let base = settings
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let actor = app::auth::ssr::Actor::cli();
    let mut ids = Vec::new();
    for (name, path, events) in [
        (
            "Orders (demo receiver)",
            "flaky",
            "order.created,order.paid",
        ),
        (
            "Billing (demo receiver, down)",
            "down",
            "invoice.failed,order.refunded",
        ),
    ] {
        let new = endpoints::NewWebhook {
            max_retries: 0,
            ..endpoints::NewWebhook::parse(
                &app::dead_letters::ssr::WebhookSettings {
                    allow_private: true,
                    ..state.webhooks.clone()
                },
                &format!("{base}/demo/webhook-receiver/{path}"),
                name,
                events,
                "",
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?
        };
        ids.push(
            endpoints::create(&state.pg, &actor, &new)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .id,
        );
    }
    let now = OffsetDateTime::now_utc();
    for i in 0..36 {
        let event_type = [
            "order.created",
            "order.paid",
            "invoice.failed",
            "order.refunded",
        ][i % 4];
        let mut tx = state.pg.begin().await?;
        ingest::enqueue(
            &mut tx,
            event_type,
            &serde_json::json!({"id": format!("evt_demo_{i}"), "order": 1000 + i,
                                "amount": 1200 + 37 * i, "currency": "EUR"}),
            &format!("demo-{i}"),
            None,
            now,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        tx.commit().await?;
    }
    let mut sending = state.clone();
    sending.webhooks.allow_private = true;
    let report = deliver::work(&sending, std::time::Duration::from_secs(60), true, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    sqlx::query("update webhooks set max_retries = 5 where id = any($1)")
        .bind(&ids)
        .execute(&state.pg)
        .await?;
    Ok(Some(format!(
        "Demo webhooks: {} deliveries dead-lettered (the console was not running); redrive \"Orders\" on /admin/dlq once it has run a few minutes.",
        report.dead_lettered
    )))
}
