//! The sign-in page, the first-admin page and the account page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::api::{ChangePassword, CreateFirstAdmin, SignIn};
use super::form::Refusal;
use crate::components::{action_error, Banner, ErrorBanner, PageHeader, Tone};

/// `/admin/login`: email and password; back to `next` afterwards.
///
/// A plain HTML form, served without the app's WASM (see [`super::form`]): it posts to
/// the sign-in server function, which answers with a redirect, to the page asked for
/// or back here with the refusal, which this page shows.
#[component]
pub fn LoginPage() -> AnyView {
    use leptos::server_fn::ServerFn;
    let query = use_query_map();
    let (next, refusal) = query.with_untracked(|q| {
        (
            q.get("next").unwrap_or_default(),
            Refusal::from_query(|name| q.get(name)),
        )
    });
    view! {
        <Title text="Sign in" />
        <main class="auth-page">
            <div class="auth-card panel">
                <h1>
                    <span class="brand-mark" aria-hidden="true">"S"</span>
                    " Sign in to Salvage"
                </h1>
                <form method="post" action=SignIn::PATH>
                    <input type="hidden" name="next" value=next />
                    <label class="field">
                        <span>"Email"</span>
                        <input type="email" name="email" autocomplete="username" required autofocus />
                    </label>
                    <label class="field">
                        <span>"Password"</span>
                        <input type="password" name="password" autocomplete="current-password" required />
                    </label>
                    {refusal.map(|refusal| view! { <ErrorBanner error=refusal.error() /> })}
                    <button type="submit" class="btn btn-primary">"Sign in"</button>
                </form>
                <p class="muted small">
                    "No account? An admin adds you under Users, or runs "
                    <code>"salvage user add"</code> "."
                </p>
            </div>
        </main>
    }
    .into_any()
}

/// `/admin/setup?token=…`: creates the first admin from the link `salvage serve` printed.
#[component]
pub fn SetupPage() -> AnyView {
    let query = use_query_map();
    let token = move || query.with(|q| q.get("token").unwrap_or_default());
    let status = Resource::new(token, super::api::setup_link_status);
    let action = ServerAction::<CreateFirstAdmin>::new();
    let value = action.value();
    view! {
        <Title text="Create the first admin" />
        <main class="auth-page">
            <div class="auth-card panel">
                <h1>"Create the first admin"</h1>
                <Suspense fallback=|| view! { <p class="muted">"Checking the link…"</p> }>
                    {move || Suspend::new(async move {
                        match (status.await, value.get()) {
                            (_, Some(Ok(email))) => view! {
                                <Banner tone=Tone::Ok>
                                    "The admin " <strong>{email}</strong> " exists. This link no longer works. "
                                    <a href="/admin/login">"Sign in"</a>
                                </Banner>
                            }.into_any(),
                            (Ok(true), _) => view! {
                                <ActionForm action>
                                    <input type="hidden" name="token" prop:value=token />
                                    <label class="field">
                                        <span>"Email"</span>
                                        <input type="email" name="email" autocomplete="username" required />
                                    </label>
                                    <label class="field">
                                        <span>"Password (at least 12 characters)"</span>
                                        <input type="password" name="password" autocomplete="new-password" required minlength="12" />
                                    </label>
                                    <label class="field">
                                        <span>"Password again"</span>
                                        <input type="password" name="confirm_password" autocomplete="new-password" required />
                                    </label>
                                    {action_error(value)}
                                    <button type="submit" class="btn btn-primary">"Create admin"</button>
                                </ActionForm>
                            }.into_any(),
                            (Ok(false), _) => view! {
                                <Banner tone=Tone::Error>
                                    "This setup link is used, expired or wrong. It works once, and only "
                                    "before any account exists. Ask whoever runs Salvage, or use "
                                    <code>"salvage user add"</code> "."
                                </Banner>
                            }.into_any(),
                            (Err(error), _) => view! { <crate::components::ErrorBanner error /> }.into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </main>
    }
    .into_any()
}

/// `/admin/account`: change your own password (required after a temporary one).
#[component]
pub fn AccountPage() -> AnyView {
    let action = ServerAction::<ChangePassword>::new();
    let value = action.value();
    let viewer = crate::auth::viewer::use_viewer();
    Effect::new(move |_| {
        if let (Some(Ok(())), Some(viewer)) = (value.get(), viewer) {
            viewer.refetch();
        }
    });
    view! {
        <Title text="Your account" />
        <PageHeader title="Your account" subtitle="Change your password. Other sessions of your account end when you do." />
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let viewer = match viewer {
                    Some(viewer) => viewer.await.ok(),
                    None => None,
                };
                viewer.map(|viewer| view! {
                    <p>"Signed in as " <strong>{viewer.email.clone()}</strong> " with the " <strong>{viewer.role.as_str()}</strong> " role."</p>
                    {viewer.must_change_password.then(|| view! {
                        <Banner tone=Tone::Warn>
                            "Your account has a temporary password. Choose your own to continue."
                        </Banner>
                    })}
                })
            })}
        </Suspense>
        <section class="panel form-panel">
            <h2>"Change password"</h2>
            <ActionForm action>
                <label class="field">
                    <span>"Current password"</span>
                    <input type="password" name="current_password" autocomplete="current-password" required />
                </label>
                <label class="field">
                    <span>"New password (at least 12 characters)"</span>
                    <input type="password" name="new_password" autocomplete="new-password" required minlength="12" />
                </label>
                <label class="field">
                    <span>"New password again"</span>
                    <input type="password" name="confirm_password" autocomplete="new-password" required />
                </label>
                {action_error(value)}
                {move || matches!(value.get(), Some(Ok(()))).then(|| view! {
                    <Banner tone=Tone::Ok>"Password changed."</Banner>
                })}
                <button type="submit" class="btn btn-primary">"Change password"</button>
            </ActionForm>
        </section>
    }
    .into_any()
}
