//! The compiled site embedded in the binary at build time (see `build.rs`): `salvage
//! serve` answers `/pkg/*` and the other static files from memory, so deploying is
//! copying one file. `LEPTOS_SITE_ROOT` set in the environment serves a folder instead
//! (development, or a site rebuilt without rebuilding the server).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use app::server::AppState;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

/// The embedded files: (URL path, contents), sorted by path. Empty when the binary was
/// built before the site.
pub fn files() -> &'static [(&'static str, &'static [u8])] {
    generated::FILES
}

fn index(path: &str) -> Option<usize> {
    files().binary_search_by(|(url, _)| (*url).cmp(path)).ok()
}

/// The embedded file at `path`, if there is one.
pub fn find(path: &str) -> Option<&'static [u8]> {
    index(path).map(|i| files()[i].1)
}

/// The content type of a site file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("wasm") => "application/wasm",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A strong validator of `bytes`: FNV-1a over the contents and the length.
fn etag(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}-{}\"", bytes.len())
}

/// The encodings a request accepts, best first, among those cargo-leptos precompresses
/// (`--precompress` writes `<file>.br` and `<file>.gz` beside each file).
fn accepted(headers: &HeaderMap) -> Vec<(&'static str, &'static str)> {
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let offers = |name: &str| {
        accept.split(',').any(|part| {
            let mut fields = part.split(';');
            let coding = fields.next().unwrap_or("").trim();
            let refused =
                fields.any(|f| matches!(f.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            coding.eq_ignore_ascii_case(name) && !refused
        })
    };
    [("br", ".br"), ("gzip", ".gz")]
        .into_iter()
        .filter(|(name, _)| offers(name))
        .collect()
}

/// The response for an embedded file at `path`, or `None` when none is embedded there:
/// its precompressed variant when the browser takes one (brotli, then gzip), with an
/// `ETag` per variant. Files are revalidated on each use (`no-cache`), as the site's
/// names do not change between versions: a new deployment is picked up at once, an
/// unchanged one costs a 304.
pub fn serve(path: &str, headers: &HeaderMap) -> Option<Response> {
    static ETAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    index(path)?;
    let (i, encoding) = accepted(headers)
        .into_iter()
        .find_map(|(name, suffix)| index(&format!("{path}{suffix}")).map(|i| (i, Some(name))))
        .or_else(|| index(path).map(|i| (i, None)))?;
    let bytes = files()[i].1;
    let tags = ETAGS.get_or_init(|| files().iter().map(|(_, bytes)| etag(bytes)).collect());
    let tag = HeaderValue::from_str(&tags[i]).expect("hex, a dash and digits");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tags[i]));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = (StatusCode::OK, bytes).into_response();
        let kind = HeaderValue::from_static(content_type(path));
        response.headers_mut().insert(header::CONTENT_TYPE, kind);
        if let Some(encoding) = encoding {
            let encoding = HeaderValue::from_static(encoding);
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, encoding);
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, tag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Some(response)
}

/// Static files and the console's 404 page: the site embedded in the binary, unless
/// `LEPTOS_SITE_ROOT` names a folder to serve instead (or nothing was embedded).
pub fn static_files(
    settings: &crate::config::Settings,
) -> impl Fn(
    axum::http::Uri,
    axum::extract::State<AppState>,
    axum::extract::Request,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    let from_disk = leptos_axum::file_and_error_handler::<AppState, _>(app::shell);
    let embedded = settings.site_root.is_none() && !files().is_empty();
    move |uri, state, request| {
        if embedded {
            if let Some(response) = serve(uri.path(), request.headers()) {
                return Box::pin(std::future::ready(response));
            }
        }
        from_disk(uri, state, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("/pkg/salvage.wasm"), "application/wasm");
        assert_eq!(
            content_type("/pkg/salvage.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/pkg/salvage.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/favicon.ico"), "image/x-icon");
        assert_eq!(content_type("/README"), "application/octet-stream");
    }

    #[test]
    fn the_embedded_list_is_sorted_for_lookup() {
        let files = files();
        assert!(files.windows(2).all(|w| w[0].0 < w[1].0));
        for (path, bytes) in files {
            assert_eq!(find(path), Some(*bytes));
        }
        assert_eq!(find("/pkg/no-such-file.js"), None);
    }

    #[test]
    fn encodings_follow_accept_encoding() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepted(&headers)
                .into_iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
        };
        assert_eq!(with("gzip, deflate, br, zstd"), ["br", "gzip"]);
        assert_eq!(with("gzip"), ["gzip"]);
        assert_eq!(with("br;q=0, gzip;q=0.5"), ["gzip"]);
        assert_eq!(with("identity"), Vec::<&str>::new());
        assert!(accepted(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn etags_differ_with_the_contents() {
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(etag(b"same"), etag(b"same"));
    }
}
