//! The Salvage console: a Leptos app rendered on the server and hydrated in the browser.
//!
//! # Layout
//!
//! One folder per feature, mirroring the URL tree. Each holds its DTOs (`mod.rs`), its
//! `#[server]` functions (`api.rs`), its page components (`page.rs`) and, behind the
//! `ssr` feature, its queries and domain logic (`ssr/` or `ssr.rs`). The folders sit in
//! layers, lowest first; docs/ARCHITECTURE.md has the table `scripts/layers.py` checks.
//!
//! 1. `server` (ssr only: [`AppState`](server::AppState) and its per-feature parts,
//!    pools, migrations, ClickHouse, tokens, sealing, the PostgreSQL watch), [`error`] ([`AppError`](error::AppError),
//!    the one error type of the boundary), [`stores`] (which store is down), [`reason`]
//!    (a reason for the history, one rule for every door),
//!    `stored` (enums stored as text, their names written once), [`format`],
//!    [`components`] (badges, headers, banners, charts, forms that work without the
//!    client, `transport`).
//! 2. [`auth`] (accounts, roles, sessions, the guard; `/admin/login`, `/admin/setup`,
//!    `/admin/account`), [`ingest_keys`] (the machines' credentials), [`history`] (`/admin/history`, the hash-chained history).
//! 3. [`jobs`] (the runner, schedules, the one start and cancel), [`freeze`] (the write
//!    freeze), [`alerts`] (`/admin/alerts`, the operators' home: the alert model, the
//!    self-monitor, silences).
//! 4. [`queues`] (ingest, fallback queues, replay, expiry; `/admin/queues`,
//!    `/admin/settings/ingest-keys`), [`crons`] (dropout detection, cron secrets;
//!    `/admin/crons`, `/admin/settings/cron-secret`), [`backups`] (`/admin/backups`),
//!    [`dead_letters`] (webhooks, deliveries, `/admin/dlq`, `/admin/settings/webhooks`),
//!    [`settings`] (`/admin/settings/users`), [`health`] (the store probes).
//! 5. [`drills`] (`/admin/drills`), [`incidents`] (incident mode), [`migrations`]
//!    (`/admin/migrations`, safe upgrades, `salvage check`), [`overview`] (`/admin`).
//! 6. This file (the routes), `shell` (the `/admin` frame) and [`registry`] (the jobs,
//!    alert kinds, background migrations and incident hooks).
//!
//! Pages, page sections and table rows return `AnyView` (`view! { … }.into_any()`): the
//! erasure keeps a page's view type from nesting every row and cell, which the release
//! build of the client cannot compile ("queries overflow the depth limit").
//!
//! Pages call server functions, server functions call domain code, domain code calls the
//! stores; nothing calls upward. The `server` crate depends on this one, never the
//! reverse.

pub mod alerts;
pub mod auth;
pub mod backups;
pub mod components;
pub mod crons;
pub mod dead_letters;
pub mod drills;
pub mod error;
pub mod format;
pub mod freeze;
pub mod health;
pub mod history;
pub mod incidents;
pub mod ingest_keys;
pub mod jobs;
pub mod migrations;
pub mod overview;
pub mod queues;
pub mod reason;
pub mod recovery;
#[cfg(feature = "ssr")]
pub mod registry;
#[cfg(feature = "ssr")]
pub mod server;
pub mod settings;
mod shell;
mod stored;
pub mod stores;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{lazy_route, path, Lazy, LazyRoute, SsrMode};

use alerts::page::AlertsPage;
use auth::page::{AccountPage, LoginPage, SetupPage};
use backups::page::BackupsPage;
use components::transport::{loads_client, request_path};
use crons::page::CronsPage;
use crons::secret_page::CronSecretPage;
use dead_letters::delivery_page::DeliveryPage;
use dead_letters::page::DlqPage;
use dead_letters::settings_page::WebhooksPage;
use drills::page::DrillsPage;
use history::page::{HistoryEntryPage, HistoryPage};
use incidents::page::IncidentPanel;
use migrations::page::MigrationsPage;
use overview::OverviewPage;
use queues::page::{IngestKeysPage, QueuesPage};
use settings::page::UsersPage;
use shell::AdminLayout;

/// Applies the stored theme before the first paint, so a dark-mode user never sees a
/// white flash. Kept tiny and free of user input.
const THEME_BOOT_SCRIPT: &str = "try{var t=localStorage.getItem('salvage-theme');\
if(t==='light'||t==='dark'){document.documentElement.setAttribute('data-theme',t)}}catch(e){}";

/// A favicon drawn inline, so the site needs no asset folder.
const FAVICON: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' \
viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' fill='%232563eb'/%3E%3Cpath \
d='M4 10.5c1 .9 2.3 1.4 4 1.4 1.9 0 3-.8 3-2 0-2.6-6.6-1.3-6.6-4.6C4.4 4 5.6 3 7.7 3c1.3 0 \
2.5.4 3.3 1' stroke='white' stroke-width='1.6' fill='none'/%3E%3C/svg%3E";

/// The Content-Security-Policy of a console page: scripts only from here or carrying
/// this response's `nonce` (Leptos puts it on its hydration and resource scripts, the
/// theme boot script carries it too), WebAssembly allowed to compile, no inline styles,
/// no plugins, no framing, forms and fetches only to this origin.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Of the pages served without the client ([`components::transport::WITHOUT_CLIENT`]), those that load the live refresh (the `live` crate:
/// about 20 KB gzip of WASM and JS), which reloads the page's `data-live` regions every
/// [`alerts::page::REFRESH_EVERY`].
pub const LIVE_REFRESH: &[&str] = &["/admin", "/admin/alerts"];

/// Loads the live refresh (built by `scripts/build.sh` into `/live/live.js`).
const LIVE_BOOT_SCRIPT: &str =
    "import init from '/live/live.js';init({module_or_path:'/live/live_bg.wasm'});";

/// The HTML document around the app, rendered on the server. Sets the page's
/// Content-Security-Policy with the nonce of this response.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let nonce = leptos::nonce::use_nonce();
    let client = loads_client();
    let live = request_path().is_some_and(|path| LIVE_REFRESH.contains(&path.as_str()));
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (
        nonce.as_ref(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        if let Ok(value) = axum::http::HeaderValue::from_str(&content_security_policy(nonce)) {
            response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href=FAVICON />
                <script nonce=nonce.clone()>{THEME_BOOT_SCRIPT}</script>
                <AutoReload options=options.clone() />
                {client.then(|| view! { <HydrationScripts options /> })}
                {live.then(|| view! {
                    <meta name="salvage-live-every-ms" content=alerts::page::REFRESH_EVERY.as_millis().to_string() />
                    <script type="module" nonce=nonce.clone()>{LIVE_BOOT_SCRIPT}</script>
                })}
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The router of the console.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <leptos_meta::Stylesheet id="leptos" href="/pkg/salvage.css" />
        <Title formatter=|page: String| format!("{page} · Salvage") text="Console" />
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/admin/login") view={Lazy::<LoginRoute>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/setup") view={Lazy::<SetupRoute>::new()} ssr=SsrMode::Async />
                // Async: the layout learns who is signed in before the status line is
                // sent, so an anonymous load gets a real 303 to the sign-in page.
                <ParentRoute path=path!("/admin") view=AdminLayout ssr=SsrMode::Async>
                    <Route path=path!("") view={Lazy::<OverviewRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("alerts") view={Lazy::<AlertsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("history") view={Lazy::<HistoryRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("history/:id") view={Lazy::<HistoryEntryRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("queues") view={Lazy::<QueuesRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("crons") view={Lazy::<CronsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("backups") view={Lazy::<BackupsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("drills") view={Lazy::<DrillsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("migrations") view={Lazy::<MigrationsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("dlq") view={Lazy::<DlqRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("dlq/deliveries/:id") view={Lazy::<DeliveryRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("settings/webhooks") view={Lazy::<WebhooksRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("settings/users") view={Lazy::<UsersRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("settings/ingest-keys") view={Lazy::<IngestKeysRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("settings/cron-secret") view={Lazy::<CronSecretRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("account") view={Lazy::<AccountRoute>::new()} ssr=SsrMode::Async />
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// Each page's view is compiled into its own WASM chunk, which the browser fetches when
/// the page is first shown (built with `cargo leptos build --split`;
/// `scripts/page-sizes.py` prints what each page loads): a page loads the shell (the
/// router and the admin layout) and its own code, not every page's. The layout stays
/// in the shell: made lazy too, it cut the sign-in page by a fifth but split the alerts
/// page into 366 files and made it heavier, every page under the layout paying for the
/// chunks the layout shares with it.
macro_rules! lazy_pages {
    ($($route:ident => $view:expr;)*) => {$(
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                mark_hydrated();
                $view.into_any()
            }
        }
    )*};
}

lazy_pages! {
    LoginRoute => view! { <LoginPage /> };
    SetupRoute => view! { <SetupPage /> };
    OverviewRoute => view! { <Title text="Overview" /><OverviewPage /> };
    AlertsRoute => view! { <AlertsPage /> };
    HistoryRoute => view! { <HistoryPage /> };
    HistoryEntryRoute => view! { <HistoryEntryPage /><IncidentPanel /> };
    QueuesRoute => view! { <QueuesPage /> };
    CronsRoute => view! { <CronsPage /> };
    BackupsRoute => view! { <BackupsPage /> };
    DrillsRoute => view! { <DrillsPage /> };
    MigrationsRoute => view! { <MigrationsPage /> };
    DlqRoute => view! { <DlqPage /> };
    DeliveryRoute => view! { <DeliveryPage /> };
    WebhooksRoute => view! { <WebhooksPage /> };
    UsersRoute => view! { <UsersPage /> };
    IngestKeysRoute => view! { <IngestKeysPage /> };
    CronSecretRoute => view! { <CronSecretPage /> };
    AccountRoute => view! { <AccountPage /> };
}

/// Marks `<body data-hydrated>` once the page has hydrated: the browser tests wait for it,
/// so a click reaches the app rather than the plain HTML form. Effects run only in the
/// browser, after the view that created them has hydrated; a page's view hydrates only
/// once its WASM chunk has loaded, so the mark is set from the page, not from `App`.
fn mark_hydrated() {
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "");
        }
    });
}

/// Any path the console does not know.
#[component]
fn NotFound() -> impl IntoView {
    mark_hydrated();
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(axum::http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <Title text="Not found" />
        <main class="not-found">
            <h1>"Not found"</h1>
            <p>"Salvage has no page at this address. " <a href="/admin">"Go to the overview"</a> "."</p>
        </main>
    }
}
