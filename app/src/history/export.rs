//! `GET /admin/history/export`: the filtered history as a CSV or Markdown download, for
//! managers and admins. An HTTP handler (a door) with its two formats.

use super::ssr::{build_filter, cursor_after, parse_cursor, search};

use super::Entry;
use crate::error::AppError;
use crate::format::iso;
use crate::server::unix_ms as millis;

/// The header row of a CSV export.
pub const CSV_HEADER: &str =
    "id,started_at,finished_at,duration_ms,kind,severity,outcome,actor,title,reason,incident_id,body";

fn csv_field(value: &str) -> String {
    // Quote every field; a leading = + - @ is prefixed so spreadsheets do not run it.
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// One entry as a CSV line (no newline).
pub fn csv_line(entry: &Entry) -> String {
    [
        entry.id.to_string(),
        csv_field(&iso(entry.started_at)),
        csv_field(&entry.finished_at.map(iso).unwrap_or_default()),
        entry
            .duration_ms()
            .map(|d| d.to_string())
            .unwrap_or_default(),
        csv_field(&entry.kind),
        csv_field(entry.severity.as_deref().unwrap_or("")),
        csv_field(entry.outcome.as_str()),
        csv_field(&entry.actor),
        csv_field(&entry.title),
        csv_field(entry.reason.as_deref().unwrap_or("")),
        entry.incident_id.map(|i| i.to_string()).unwrap_or_default(),
        csv_field(&entry.body),
    ]
    .join(",")
}

fn md_cell(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// The Markdown table header of an export.
pub const MARKDOWN_HEADER: &str =
    "| # | started (UTC) | kind | outcome | duration | actor | title | reason |\n\
|--:|---|---|---|--:|---|---|---|";

/// One entry as a Markdown table row.
pub fn markdown_line(entry: &Entry) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        entry.id,
        md_cell(&iso(entry.started_at)),
        md_cell(&entry.kind),
        entry.outcome.as_str(),
        entry
            .duration_ms()
            .map(crate::format::format_duration)
            .unwrap_or_default(),
        md_cell(&entry.actor),
        md_cell(&entry.title),
        md_cell(entry.reason.as_deref().unwrap_or("")),
    )
}

/// The most entries one export holds; narrow the filters for more.
pub const EXPORT_LIMIT: usize = 50_000;

/// The most bytes one export holds (entries can carry 10,000-character bodies).
pub const EXPORT_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Entries read from PostgreSQL per step of the stream.
const EXPORT_PAGE: i64 = 500;

crate::history::ssr::details! {
    /// Who took the history away, in which format and with which filters.
    struct HistoryExported for HistoryExport {
        format: &'static str,
        filters: ExportFilters,
    }
}

/// The list's filters, as typed in its form: what an export reads, and records.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExportFilters {
    pub kind: String,
    pub actor: String,
    pub outcome: String,
    pub from: String,
    pub to: String,
    pub q: String,
}

/// Query parameters of `GET /admin/history/export`: the list's filters plus `format`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ExportQuery {
    pub format: Option<String>,
    #[serde(flatten)]
    pub filters: ExportFilters,
}

/// `GET /admin/history/export?format=csv|markdown&<filters>`: the filtered history as a
/// download. Managers and admins only (the role table's "exports history").
pub async fn export_handler(
    axum::extract::State(state): axum::extract::State<crate::server::AppState>,
    session: tower_sessions::Session,
    axum::extract::Query(query): axum::extract::Query<ExportQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match export(&state, &session, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn export(
    state: &crate::server::AppState,
    session: &tower_sessions::Session,
    query: ExportQuery,
) -> Result<axum::response::Response, AppError> {
    use crate::server::postgres::{lock_class, try_exclusive};
    use axum::http::header;
    use axum::response::IntoResponse;
    let actor = crate::auth::ssr::authenticate(state, session).await?;
    if actor.must_change_password {
        return Err(AppError::Forbidden {
            message: "Choose a new password first: your account has a temporary one.".into(),
        });
    }
    actor.authorize(crate::auth::Permission::ExportHistory)?;
    let markdown = match query.format.as_deref().unwrap_or("csv") {
        "csv" => false,
        "markdown" | "md" => true,
        _ => return Err(AppError::invalid("format", "use csv or markdown")),
    };
    let filter = build_filter(
        query.filters.kind.clone(),
        query.filters.actor.clone(),
        query.filters.outcome.clone(),
        query.filters.from.clone(),
        query.filters.to.clone(),
        query.filters.q.clone(),
        String::new(),
    )?;
    // One export per person at a time; the lock lives as long as the stream.
    let user_id = actor.user_id.unwrap_or_default();
    let exclusive = try_exclusive(&state.pg, lock_class::HISTORY_EXPORT, user_id as i32)
        .await
        .map_err(AppError::wrap("Failed to start the export"))?
        .ok_or_else(|| AppError::Conflict {
            message: "Your previous export is still downloading; wait for it to finish.".into(),
        })?;
    let format = if markdown { "markdown" } else { "csv" };
    crate::history::ssr::record(
        &state.pg,
        &crate::history::ssr::NewEntry::new(
            HistoryExported {
                format,
                filters: query.filters.clone(),
            },
            format!("History exported as {format}"),
            &actor,
            crate::history::Outcome::Info,
        ),
        "Failed to record the export",
    )
    .await?;
    let header_text = if markdown {
        format!(
            "# Salvage runbook history\n\nExported by {} at {}.\n\n{MARKDOWN_HEADER}\n",
            actor.name,
            crate::format::format_utc(millis(state.clock.now()))
        )
    } else {
        format!("{CSV_HEADER}\n")
    };
    tracing::info!(actor = %actor.name, markdown, "history export started");
    let body = export_stream(state.clone(), filter, markdown, header_text, exclusive);
    let date = state.clock.now().date();
    let (content_type, extension) = if markdown {
        ("text/markdown; charset=utf-8", "md")
    } else {
        ("text/csv; charset=utf-8", "csv")
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"salvage-history-{date}.{extension}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// Where the export stream is.
struct ExportCursor {
    state: crate::server::AppState,
    filter: super::ssr::Filter,
    markdown: bool,
    entries: usize,
    bytes: usize,
    /// The first chunk, written before any entry.
    header: Option<String>,
    done: bool,
    _exclusive: crate::server::postgres::Exclusive,
}

/// The export as a stream of chunks, one page of entries each: memory stays at one page
/// however long the history. It ends at [`EXPORT_LIMIT`] entries or [`EXPORT_MAX_BYTES`]
/// (Markdown says so in a last line); a failed read ends the download with an error (the client sees
/// a broken transfer, never a silently short file).
fn export_stream(
    state: crate::server::AppState,
    filter: super::ssr::Filter,
    markdown: bool,
    header: String,
    exclusive: crate::server::postgres::Exclusive,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> + Send + 'static {
    let cursor = ExportCursor {
        bytes: header.len(),
        state,
        filter,
        markdown,
        entries: 0,
        header: Some(header),
        done: false,
        _exclusive: exclusive,
    };
    futures::stream::unfold(cursor, |mut cursor| async move {
        if let Some(header) = cursor.header.take() {
            return Some((Ok(header), cursor));
        }
        if cursor.done {
            return None;
        }
        let page = search(
            &cursor.state.pg,
            &cursor.filter,
            EXPORT_PAGE,
            cursor.state.clock.now(),
        )
        .await;
        let (entries, more) = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, "history export failed halfway");
                cursor.done = true;
                return Some((
                    Err(std::io::Error::other("the history export failed")),
                    cursor,
                ));
            }
        };
        let mut chunk = String::new();
        let mut truncated = false;
        for entry in &entries {
            let line = if cursor.markdown {
                markdown_line(entry)
            } else {
                csv_line(entry)
            };
            if cursor.entries >= EXPORT_LIMIT || cursor.bytes + line.len() + 1 > EXPORT_MAX_BYTES {
                truncated = true;
                break;
            }
            cursor.bytes += line.len() + 1;
            cursor.entries += 1;
            chunk.push_str(&line);
            chunk.push('\n');
        }
        match entries.last() {
            Some(last) if more && !truncated => match parse_cursor(&cursor_after(last)) {
                Ok(before) => cursor.filter.before = Some(before),
                Err(_) => cursor.done = true,
            },
            _ => cursor.done = true,
        }
        if truncated || (more && cursor.done) {
            cursor.done = true;
            let note = format!(
                "Only the newest {} entries fit in one export; narrow the filters for older ones.",
                cursor.entries
            );
            // CSV has no comment syntax: a spreadsheet would read a note as a row.
            if cursor.markdown {
                chunk.push_str(&format!("\n{note}\n"));
            }
        }
        if cursor.done {
            tracing::info!(
                entries = cursor.entries,
                bytes = cursor.bytes,
                "history exported"
            );
        }
        Some((Ok(chunk), cursor))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "\"'=1+1\"");
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
    }
}
