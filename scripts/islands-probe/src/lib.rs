//! The smallest islands clients worth measuring; see Cargo.toml.

use leptos::prelude::*;
use std::time::Duration;

/// A counter that ticks on a timer: the islands runtime with nothing else.
#[cfg(not(feature = "live"))]
#[island]
pub fn Ticker(every_secs: u64) -> impl IntoView {
    let tick = RwSignal::new(0u32);
    let _ = set_interval_with_handle(
        move || tick.update(|t| *t += 1),
        Duration::from_secs(every_secs),
    );
    view! { <span>{move || tick.get()}</span> }
}

#[cfg(feature = "live")]
mod live {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Row {
        pub id: i64,
        pub title: String,
        pub severity: String,
        pub at_ms: i64,
    }

    #[server]
    pub async fn list_rows(view: String) -> Result<Vec<Row>, ServerFnError> {
        let _ = view;
        Ok(vec![])
    }

    #[server]
    pub async fn acknowledge(id: i64, note: String) -> Result<String, ServerFnError> {
        Ok(format!("{id} {note}"))
    }

    /// A table refreshed every 10 s from a server function, and one action form.
    #[island]
    pub fn LiveTable(view: String) -> impl IntoView {
        let tick = RwSignal::new(0u32);
        let _ = set_interval_with_handle(move || tick.update(|t| *t += 1), Duration::from_secs(10));
        let rows = Resource::new(move || (tick.get(), view.clone()), |(_, v)| list_rows(v));
        let ack = ServerAction::<Acknowledge>::new();
        view! {
            <table>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        rows.await.map(|rows| {
                            rows.into_iter()
                                .map(|r| view! { <tr><td>{r.id}</td><td>{r.title}</td><td>{r.severity}</td><td>{r.at_ms}</td></tr> })
                                .collect_view()
                        })
                    })}
                </Transition>
            </table>
            <ActionForm action=ack>
                <input name="id" />
                <textarea name="note"></textarea>
                <button type="submit" disabled=move || ack.pending().get()>"Acknowledge"</button>
            </ActionForm>
            {move || ack.value().get().map(|r| format!("{r:?}"))}
        }
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
