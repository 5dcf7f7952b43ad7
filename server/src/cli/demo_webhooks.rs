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
    let any = sqlx::query_scalar!(r#"select exists (select 1 from webhooks) as "any!""#)
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
                    ..state.webhooks().clone()
                },
                &format!("{base}/demo/webhook-receiver/{path}"),
                name,
                events,
                "",
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?
        };
        ids.push(
            endpoints::create(&state.pg, &state.webhooks().secret_keys, &actor, &new)
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
    sending
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .allow_private = true;
    let report = deliver::work(&sending, std::time::Duration::from_secs(60), true, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    sqlx::query!(
        "update webhooks set max_retries = 5 where id = any($1)",
        &ids
    )
    .execute(&state.pg)
    .await?;
    Ok(Some(format!(
        "Demo webhooks: {} deliveries dead-lettered (the console was not running); redrive \"Orders\" on /admin/dlq once it has run a few minutes.",
        report.dead_lettered
    )))
}

/// A month of older webhook events, stored as the previous version stored them (no
/// payload size), so the background migration `webhook_event_payload_bytes` has real
/// work when the console starts (`make run` paces it so the page shows it running).
/// Only when none exist yet.
pub async fn older_events(
    state: &app::server::AppState,
    count: i64,
) -> anyhow::Result<Option<String>> {
    let any = sqlx::query_scalar!(
        r#"select exists (select 1 from webhook_events
                           where idempotency_key like 'demo-older-%') as "any!""#
    )
    .fetch_one(&state.pg)
    .await?;
    if any {
        return Ok(None);
    }
    let mut tx = state.pg.begin().await?;
    sqlx::query!(
        "insert into webhook_events (event_type, payload, idempotency_key, payload_digest, created_at)
         select (array['order.created', 'order.paid', 'invoice.failed', 'order.refunded'])[1 + n % 4],
                jsonb_build_object('order', 'ord_' || n, 'amount', 100 + n % 9000,
                                   'currency', 'EUR', 'lines', n % 7 + 1),
                'demo-older-' || n, sha256(n::text::bytea),
                now() - interval '30 days' + n * interval '40 seconds'
           from generate_series(1, $1::bigint) n",
        count
    )
    .execute(&mut *tx)
    .await?;
    // The row registered before the events were added may have finished on an empty
    // table: the older events are new work for it.
    sqlx::query!(
        "update background_migrations
            set status = 'pending', progress_total = null, progress_current = 0, cursor = null,
                started_at = null, finished_at = null
          where name = 'webhook_event_payload_bytes' and status = 'succeeded'"
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(format!(
        "Demo background migration: {} older webhook events without a payload size, for \
         webhook_event_payload_bytes to fill in (see /admin/migrations).",
        app::format::group_digits(count as u64)
    )))
}
