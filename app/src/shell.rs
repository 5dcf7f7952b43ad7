//! The app shell, part of the composition root: the persistent frame of `/admin`: product name, who is signed in, navigation, theme.
//!
//! The layout asks the server who is signed in before anything renders (a blocking
//! resource, and the routes render in `SsrMode::Async`), so an anonymous page load gets
//! a real `303 See Other` to the sign-in page, with the page it wanted as `next`. This is
//! a convenience: every server function the pages call runs the guard itself.

use leptos::prelude::*;
use leptos_router::components::{Outlet, A};
use leptos_router::hooks::use_location;

use crate::alerts::AlertsChanged;
use crate::auth::api::{current_user, sign_out, SignOut};
use crate::auth::viewer::{login_url, ViewerResource};
use crate::auth::{Permission, Viewer};
use crate::components::transport::redirect_to;
use crate::components::{Badge, Banner, ErrorBanner, ThemeToggle, Tone};
use crate::error::AppError;

/// One entry of the side navigation, shown to roles with `permission`.
struct NavItem {
    href: &'static str,
    label: &'static str,
    permission: Permission,
}

const NAV: &[NavItem] = &[
    NavItem {
        href: "/admin",
        label: "Overview",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/alerts",
        label: "Alerts",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/queues",
        label: "Queues",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/dlq",
        label: "Dead letters",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/crons",
        label: "Crons",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/backups",
        label: "Backups",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/drills",
        label: "Drills",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/migrations",
        label: "Migrations",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/history",
        label: "History",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/settings/users",
        label: "Users",
        permission: Permission::ManageUsers,
    },
    NavItem {
        href: "/admin/settings/ingest-keys",
        label: "Ingest keys",
        permission: Permission::Administer,
    },
    NavItem {
        href: "/admin/settings/webhooks",
        label: "Webhooks",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/settings/cron-secret",
        label: "Cron secret",
        permission: Permission::Read,
    },
    NavItem {
        href: "/admin/account",
        label: "Your account",
        permission: Permission::Read,
    },
];

/// The layout every signed-in `/admin` page renders inside.
#[component]
pub fn AdminLayout() -> impl IntoView {
    let viewer = Resource::new_blocking(|| (), |_| current_user());
    provide_context(ViewerResource(viewer));
    let alerts_changed = RwSignal::new(0_u32);
    provide_context(AlertsChanged(alerts_changed));
    let alert_tick = crate::components::refresh_ticker(ALERT_COUNT_EVERY);
    // Asked only once the viewer is known: an anonymous load or a store outage costs no
    // second query.
    let alert_counts = Resource::new(
        move || (alert_tick.get(), alerts_changed.get()),
        move |_| async move {
            viewer.await?;
            crate::alerts::api::count_open_alerts().await
        },
    );
    let location = use_location();

    let gate = move || {
        Suspend::new(async move {
            // `search` comes without its leading `?`.
            let search = location.search.get_untracked();
            let here = if search.is_empty() {
                location.pathname.get_untracked()
            } else {
                format!("{}?{}", location.pathname.get_untracked(), search)
            };
            match viewer.await {
                Ok(viewer)
                    if viewer.must_change_password && !here.starts_with("/admin/account") =>
                {
                    redirect_to("/admin/account");
                }
                Ok(_) => {}
                Err(AppError::Unauthorized) => redirect_to(&login_url(&here)),
                Err(_) => {}
            }
        })
    };

    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <div class="shell">
            <header class="topbar">
                <a class="brand" href="/admin">
                    <span class="brand-mark" aria-hidden="true">"S"</span>
                    "Salvage"
                </a>
                <span class="topbar-tag muted">"disaster-recovery console"</span>
                <div class="topbar-end">
                    <Suspense fallback=|| ()>
                        {gate}
                        {move || Suspend::new(async move {
                            viewer.await.ok().map(|viewer| view! { <WhoAmI viewer /> })
                        })}
                    </Suspense>
                    <ThemeToggle />
                </div>
            </header>
            // `data-live`: the live refresh swaps it on a page served without the client.
            <nav class="sidenav" aria-label="Console" id="live-nav" data-live="">
                // A transition, so the list stays while the alert count refreshes. Nothing
                // here creates a resource or a suspense of its own: anything made inside
                // an async block is made later on the server than in the browser, and the
                // hydration would then look for the page's data under the wrong ids.
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let role = viewer.await.ok().map(|v| v.role);
                        let counts = alert_counts.await.ok();
                        view! {
                            <ul>
                                {NAV
                                    .iter()
                                    .filter(|item| role.is_some_and(|r| r.can(item.permission)))
                                    .map(|item| {
                                        let count = (item.href == "/admin/alerts")
                                            .then(|| counts.clone())
                                            .flatten();
                                        view! {
                                            <li>
                                                <A href=item.href exact=item.href == "/admin">
                                                    {item.label}
                                                    {count.map(|counts| nav_alert_count(&counts))}
                                                </A>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        }
                    })}
                </Transition>
            </nav>
            <main id="main" class="content" tabindex="-1">
                // A store outage is said once, on top of every page, in the words the
                // error carries (it names the store); the page's own parts say it too.
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        match viewer.await {
                            Err(error @ AppError::Unavailable { .. }) => {
                                Some(view! { <ErrorBanner error /> })
                            }
                            _ => None,
                        }
                    })}
                </Suspense>
                // A freeze (a restore's or an incident's), on every page while it lasts.
                <div id="live-freezes" data-live="">
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            let freezes = alert_counts.await.map(|c| c.freezes).unwrap_or_default();
                            freezes.into_iter().map(freeze_banner).collect_view()
                        })}
                    </Transition>
                </div>
                <Outlet />
            </main>
        </div>
    }
}

/// The banner of one open freeze.
fn freeze_banner(f: crate::freeze::Freeze) -> impl IntoView {
    let since = format!(
        "{} — since {} by {}.",
        f.reason,
        crate::format::format_utc(f.started_ms),
        f.started_by
    );
    match (f.store, f.incident_id) {
        (Some(store), _) => view! {
            <Banner tone=Tone::Warn test_id="freeze-banner">
                <strong>{format!("{} is frozen for a restore. ", store.label())}</strong>
                {format!("{since} Replay and expiry wait; ingest parks rows in the fallback queue.")}
                " " <a href="/admin/backups">"Open the backups"</a>
            </Banner>
        }
        .into_any(),
        (None, incident) => view! {
            <Banner tone=Tone::Warn test_id="freeze-banner">
                <strong>"Incident freeze. "</strong>
                {format!("{since} Expiry and backup retention wait; in-place restores need an admin's confirmation. Ingest and replay go on.")}
                " " {incident.map(|id| view! { <a href=format!("/admin/history/{id}")>{format!("Open incident #{id}")}</a> })}
            </Banner>
        }
        .into_any(),
    }
}

/// How often the nav's alert count refreshes.
const ALERT_COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The open critical and warning alerts nobody has taken yet, beside "Alerts" in the nav
/// on every page; nothing when there are none.
fn nav_alert_count(counts: &crate::alerts::AlertCounts) -> Option<AnyView> {
    (counts.needing_attention() > 0).then(|| {
        let label = format!(
            "{} critical, {} warning alerts open",
            counts.critical, counts.warning
        );
        let critical = counts.critical;
        let warning = counts.warning;
        view! {
            <span class="nav-count" data-testid="nav-alert-count" title=label.clone() aria-label=label>
                {(critical > 0).then(|| view! { <span class="nav-count-critical">{critical}</span> })}
                {(warning > 0).then(|| view! { <span class="nav-count-warning">{warning}</span> })}
            </span>
        }
        .into_any()
    })
}

/// The signed-in person and the sign-out button.
#[component]
fn WhoAmI(viewer: Viewer) -> impl IntoView {
    let sign_out_action = ServerAction::<SignOut>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = sign_out_action.value().get() {
            // A full load: nothing of the signed-in page survives in memory.
            #[cfg(feature = "hydrate")]
            let _ = window().location().set_href("/admin/login");
        }
    });
    let _ = sign_out;
    view! {
        <span class="who" data-testid="signed-in-as">
            <span>{viewer.email}</span>
            " "
            <Badge tone=Tone::Neutral label=viewer.role.as_str() />
        </span>
        <ActionForm action=sign_out_action attr:class="inline-form">
            <button type="submit" class="btn btn-small">"Sign out"</button>
        </ActionForm>
    }
}
