//! The persistent frame of `/admin`: product name, navigation, theme toggle.

use leptos::prelude::*;
use leptos_router::components::{Outlet, A};

use super::ThemeToggle;

/// One entry of the side navigation. Only pages that exist are listed.
struct NavItem {
    href: &'static str,
    label: &'static str,
}

const NAV: &[NavItem] = &[NavItem {
    href: "/admin",
    label: "Overview",
}];

/// The layout every `/admin` page renders inside.
#[component]
pub fn AdminLayout() -> impl IntoView {
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
                    <ThemeToggle />
                </div>
            </header>
            <nav class="sidenav" aria-label="Console">
                <ul>
                    {NAV
                        .iter()
                        .map(|item| {
                            view! {
                                <li>
                                    <A href=item.href exact=true>{item.label}</A>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            </nav>
            <main id="main" class="content" tabindex="-1">
                <Outlet />
            </main>
        </div>
    }
}
