//! Embeds the compiled site (`target/site`: the WASM client, its JS glue, the stylesheet
//! and any assets that cargo-leptos wrote before it built this binary) so that
//! `salvage serve` needs no folder beside it. Generates `$OUT_DIR/site.rs`: one
//! `include_bytes!` per file, keyed by its URL path. Without a site (a plain `cargo
//! build` before any `cargo leptos build`) the list is empty and `serve` reads
//! `LEPTOS_SITE_ROOT` from disk as before. `SALVAGE_EMBED_SITE=off` embeds nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let site = manifest.join("../target/site");
    // An existing folder, so that cargo's change check is stable before the first site
    // build (a missing path would rerun this script, and rebuild the crate, every time).
    let _ = std::fs::create_dir_all(&site);
    println!("cargo:rerun-if-changed={}", site.display());
    println!("cargo:rerun-if-env-changed=SALVAGE_EMBED_SITE");

    let mut files = Vec::new();
    if std::env::var("SALVAGE_EMBED_SITE").as_deref() != Ok("off") {
        collect(&site, &site, &mut files);
    }
    files.sort();
    let mut code = String::from("/// The compiled site: (URL path, contents), sorted by path.\n");
    code.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (url, path) in &files {
        let _ = writeln!(
            code,
            "    ({url:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("site.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

/// Every file under `dir`, as (`/`-separated path from `root` with a leading `/`, the
/// file's absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let url: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let absolute = path.canonicalize().unwrap_or(path.clone());
            files.push((format!("/{}", url.join("/")), absolute));
        }
    }
}
