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

/// Query parameters of `GET /admin/history/export`: the list's filters plus `format`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ExportQuery {
    pub format: Option<String>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub q: String,
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
    use axum::http::header;
    use axum::response::IntoResponse;
    let actor = crate::auth::ssr::session::authenticate(state, session).await?;
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
    let mut filter = build_filter(
        query.kind,
        query.actor,
        query.outcome,
        query.from,
        query.to,
        query.q,
        String::new(),
    )?;
    let mut lines = vec![if markdown {
        format!(
            "# Salvage runbook history\n\nExported by {} at {}.\n\n{MARKDOWN_HEADER}",
            actor.name,
            crate::format::format_utc(millis(state.clock.now()))
        )
    } else {
        CSV_HEADER.to_owned()
    }];
    let mut count = 0usize;
    let mut truncated = false;
    loop {
        let (entries, more) = search(&state.pg, &filter, 1000, state.clock.now())
            .await
            .map_err(|e| AppError::internal("Failed to export the history", e))?;
        for entry in &entries {
            lines.push(if markdown {
                markdown_line(entry)
            } else {
                csv_line(entry)
            });
        }
        count += entries.len();
        match entries.last() {
            Some(last) if more => {
                if count >= EXPORT_LIMIT {
                    truncated = true;
                    break;
                }
                filter.before = Some(parse_cursor(&cursor_after(last))?);
            }
            _ => break,
        }
    }
    if markdown && truncated {
        lines.push(format!("\nOnly the newest {EXPORT_LIMIT} entries are included; narrow the filters for older ones."));
    }
    tracing::info!(actor = %actor.name, entries = count, markdown, "history exported");
    let date = state.clock.now().date();
    let (content_type, extension) = if markdown {
        ("text/markdown; charset=utf-8", "md")
    } else {
        ("text/csv; charset=utf-8", "csv")
    };
    let mut body = lines.join("\n");
    body.push('\n');
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"salvage-history-{date}.{extension}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
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
