//! Who is signed in, as the pages read it: the viewer resource the shell provides, the
//! sign-in link, and [`IfAllowed`]. Conveniences that hide what a role cannot use; the
//! gate is the guard every server function runs.

use leptos::prelude::*;

use super::{Permission, Viewer};
use crate::error::AppError;

/// Who is signed in, as every page under the layout can read it.
#[derive(Clone, Copy)]
pub struct ViewerResource(pub Resource<Result<Viewer, AppError>>);

/// The signed-in person (from context), for hiding controls a role cannot use. Never a
/// gate: the server refuses regardless.
pub fn use_viewer() -> Option<Resource<Result<Viewer, AppError>>> {
    use_context::<ViewerResource>().map(|v| v.0)
}

/// `/admin/login?next=<the page asked for>`, percent-encoded.
pub fn login_url(next: &str) -> String {
    let mut encoded = String::new();
    for byte in next.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    format!("/admin/login?next={encoded}")
}

/// Renders `children` only for a role with `permission`, on the server as in the
/// browser. A convenience that hides what a role cannot use; never a gate.
#[component]
pub fn IfAllowed(permission: Permission, children: ChildrenFn) -> impl IntoView {
    let viewer = use_viewer();
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let children = children.clone();
                Suspend::new(async move {
                    let allowed = match viewer {
                        Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(permission)),
                        None => false,
                    };
                    allowed.then(|| children())
                })
            }}
        </Suspense>
    }
}
