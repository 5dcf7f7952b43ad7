//! The WASM entry point: hydrates the server-rendered Salvage console. Nothing else lives here.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // The pages are lazy routes (split into WASM chunks per page): hydration waits for the
    // current page's chunk to load before it walks the server's HTML.
    leptos::mount::hydrate_lazy(app::App);
}
