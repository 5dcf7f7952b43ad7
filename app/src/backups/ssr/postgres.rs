//! PostgreSQL: `pg_dump -Fc` in an exported snapshot (the row counts are taken in the
//! same snapshot, so counts and dump agree exactly), `pg_restore` into a side database
//! or, for application tables, in place, and the structure figures both compare.
//!
//! The tools get their connection from `PG*` variables, never from the command line:
//! the password must not show in the process list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::manifest::{schema_checksum, TableEntry};
use super::BackupError;
use super::BackupSettings;
use crate::error::AppError;

/// Salvage's own tables in PostgreSQL, kept with the schema (see
/// [`crate::server::postgres::OWN_TABLES`]). Everything else in `public` is application
/// data.
pub use crate::server::postgres::OWN_TABLES;

/// Tables whose rows a dump leaves out (their structure stays): live session ids and the
/// sign-in throttle's counts must not come back with a restore.
pub const DATA_LEFT_OUT: &[&str] = &["sessions", "sign_in_failures"];

/// Whether `table` is one of Salvage's own.
pub fn is_own(table: &str) -> bool {
    OWN_TABLES.contains(&table)
}

/// The URL restores and dumps connect with: the schema owner's when there is one.
pub fn working_url(settings: &BackupSettings) -> &SecretString {
    settings
        .owner_url
        .as_ref()
        .unwrap_or(&settings.database_url)
}

/// The parts of a PostgreSQL URL the tools need, as `PG*` variables.
fn tool_env(url: &SecretString, database: Option<&str>) -> Result<Vec<(String, String)>, AppError> {
    let parsed = url::Url::parse(url.expose_secret())
        .map_err(|_| AppError::internal("Read the database URL", "unparsable database URL"))?;
    let mut env = vec![
        (
            "PGHOST".to_owned(),
            parsed.host_str().unwrap_or("localhost").to_owned(),
        ),
        (
            "PGPORT".to_owned(),
            parsed.port().unwrap_or(5432).to_string(),
        ),
        ("PGUSER".to_owned(), decode(parsed.username())),
        (
            "PGPASSWORD".to_owned(),
            decode(parsed.password().unwrap_or("")),
        ),
        (
            "PGDATABASE".to_owned(),
            database
                .map(str::to_owned)
                .unwrap_or_else(|| decode(parsed.path().trim_start_matches('/'))),
        ),
    ];
    for (key, value) in parsed.query_pairs() {
        if key == "sslmode" {
            env.push(("PGSSLMODE".to_owned(), value.into_owned()));
        }
    }
    Ok(env)
}

fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The database `url` names.
pub fn database_name(url: &SecretString) -> String {
    url::Url::parse(url.expose_secret())
        .map(|u| decode(u.path().trim_start_matches('/')))
        .unwrap_or_default()
}

/// A connection to `database` (or the URL's own) as the URL's role.
pub async fn connect(
    url: &SecretString,
    database: Option<&str>,
) -> Result<PgConnection, sqlx::Error> {
    let mut options: sqlx::postgres::PgConnectOptions = url.expose_secret().parse()?;
    options = options.application_name("salvage-backup");
    if let Some(database) = database {
        options = options.database(database);
    }
    PgConnection::connect_with(&options).await
}

fn tool(settings: &BackupSettings, name: &str) -> PathBuf {
    match &settings.pg_bin_dir {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// A command for the tool `name`, connected through `PG*` variables.
fn command(
    settings: &BackupSettings,
    name: &str,
    url: &SecretString,
    database: Option<&str>,
) -> Result<Command, AppError> {
    let mut command = Command::new(tool(settings, name));
    command
        .envs(tool_env(url, database)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

/// `pg_dump --version`'s line and major version.
pub async fn tool_version(
    settings: &BackupSettings,
    name: &str,
) -> Result<(String, u32), AppError> {
    let output = Command::new(tool(settings, name))
        .arg("--version")
        .output()
        .await
        .map_err(|error| {
            AppError::internal(
                "Find the PostgreSQL tools",
                format!("{name} could not be started ({error}); install the PostgreSQL client tools or set SALVAGE_PG_BIN_DIR"),
            )
        })?;
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let major = line
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse::<u32>().ok())
        .ok_or_else(|| AppError::internal("Read the tool version", format!("`{line}`")))?;
    Ok((line, major))
}

/// Refuses a `pg_dump` older than the server: it cannot dump a newer server.
pub fn check_tool_major(
    tool_line: &str,
    tool_major: u32,
    server_major: u32,
) -> Result<(), BackupError> {
    if tool_major < server_major {
        return Err(BackupError::Tool(format!(
            "{tool_line} is older than the server (PostgreSQL {server_major}): it cannot dump it. \
             Install pg_dump {server_major} or newer, or point SALVAGE_PG_BIN_DIR at it"
        )));
    }
    Ok(())
}

/// Every table of the `public` schema with its exact row count and structure, read on
/// `conn` (in the caller's snapshot when it holds one).
pub async fn tables(conn: &mut PgConnection) -> Result<Vec<TableEntry>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select c.oid::bigint as "oid!", c.relname::text as "name!",
                case c.relkind when 'p' then 'partitioned table' else 'table' end as "engine!",
                coalesce((select string_agg(a.attname, ',' order by k.ord)
                          from pg_index i
                          cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
                          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                          where i.indrelid = c.oid and i.indisprimary), '') as "sort_key!"
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and c.relkind in ('r', 'p')
         order by c.relname"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        let (oid, name) = (row.oid, row.name);
        let columns: Vec<(String, String)> = sqlx::query!(
            r#"select attname::text as "name!",
                      format_type(atttypid, atttypmod)
                          || case when attnotnull then ' not null' else '' end as "type!"
                 from pg_attribute
                where attrelid = $1::bigint::oid and attnum > 0 and not attisdropped
                order by attnum"#,
            oid
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| (row.name, row.r#type))
        .collect();
        let objects: Vec<String> = sqlx::query_scalar!(
            r#"select relname::text as "name!" from pg_class
               where oid in (select indexrelid from pg_index where indrelid = $1::bigint::oid)
             union select conname::text from pg_constraint where conrelid = $1::bigint::oid
             union select s.relname::text from pg_depend d join pg_class s on s.oid = d.objid
               where d.refobjid = $1::bigint::oid and s.relkind = 'S' and d.deptype in ('a', 'i')
             order by 1"#,
            oid
        )
        .fetch_all(&mut *conn)
        .await?;
        let count: i64 =
            sqlx::query_scalar(&format!("select count(*) from public.{}", quote(&name)))
                .fetch_one(&mut *conn)
                .await?;
        tables.push(TableEntry {
            schema_checksum: schema_checksum(&columns, &row.engine, &row.sort_key),
            own: is_own(&name),
            rows: count,
            name,
            objects,
        });
    }
    Ok(tables)
}

/// `name` as a quoted identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A running `pg_dump -Fc` of the URL's database in `snapshot`; its stdout is the dump.
pub fn spawn_dump(
    settings: &BackupSettings,
    url: &SecretString,
    snapshot: &str,
) -> Result<tokio::process::Child, AppError> {
    let mut command = command(settings, "pg_dump", url, None)?;
    command.args(["--format=custom", "--no-password", "--snapshot", snapshot]);
    command.args(left_out());
    command
        .spawn()
        .map_err(|error| AppError::internal("Start pg_dump", error.to_string()))
}

/// `pg_dump -Fc` of the URL's database into `path` (an existing private file), the rows
/// of [`DATA_LEFT_OUT`] left out as in every backup; the error is its first line.
pub async fn dump_to_file(
    settings: &BackupSettings,
    url: &SecretString,
    path: &Path,
) -> Result<(), BackupError> {
    let mut command = command(settings, "pg_dump", url, None).map_err(BackupError::tool)?;
    command
        .args(["--format=custom", "--no-password", "--file"])
        .arg(path)
        .args(left_out());
    run_to_end(command, "pg_dump").await
}

/// `pg_dump`'s arguments that leave out the rows of [`DATA_LEFT_OUT`].
fn left_out() -> impl Iterator<Item = String> {
    DATA_LEFT_OUT
        .iter()
        .map(|table| format!("--exclude-table-data=public.{table}"))
}

/// Runs `command` (the tool `name`) to its end; the error is the first line it wrote.
async fn run_to_end(mut command: Command, name: &str) -> Result<(), BackupError> {
    let output = command
        .output()
        .await
        .map_err(|error| BackupError::tool(format!("{name} could not be started: {error}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(BackupError::Tool(first_line(
        &String::from_utf8_lossy(&output.stderr),
        &format!("{name} failed"),
    )))
}

/// Rows per table in the dump at `path`, decoded from its data (`pg_restore --data-only`
/// to a stream, counting each table's `COPY` lines). Reads the whole file.
pub async fn count_dump_rows(
    settings: &BackupSettings,
    path: &Path,
) -> Result<HashMap<String, i64>, BackupError> {
    let mut child = Command::new(tool(settings, "pg_restore"))
        .args(["--data-only", "--file=-"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| BackupError::tool(format!("pg_restore could not be started: {error}")))?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::with_capacity(1 << 20, stdout).split(b'\n');
    let mut counts = HashMap::new();
    let mut current: Option<(String, i64)> = None;
    while let Some(line) = lines.next_segment().await.map_err(BackupError::tool)? {
        match &mut current {
            Some((_, rows)) if line != b"\\." => *rows += 1,
            Some(_) => {
                let (table, rows) = current.take().expect("in a COPY");
                counts.insert(table, rows);
            }
            None => {
                if let Some(table) = copy_target(&line) {
                    current = Some((table, 0));
                }
            }
        }
    }
    let mut errors = String::new();
    let _ = stderr.read_to_string(&mut errors).await;
    let status = child.wait().await.map_err(BackupError::tool)?;
    if !status.success() || current.is_some() {
        return Err(BackupError::Tool(first_line(
            &errors,
            "pg_restore could not read the dump",
        )));
    }
    Ok(counts)
}

/// The table of a `COPY public.name (…) FROM stdin;` line, unqualified and unquoted.
fn copy_target(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("COPY ")?;
    if !line.ends_with("FROM stdin;") {
        return None;
    }
    let target = rest.split(" (").next()?.split(" FROM").next()?;
    let table = target.strip_prefix("public.")?;
    Some(table.trim_matches('"').replace("\"\"", "\""))
}

/// The first line of a tool's error output, or `fallback`.
pub fn first_line(errors: &str, fallback: &str) -> String {
    errors
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Runs `pg_restore` of `dump` into `database` with `args`; the error is its first line.
pub async fn run_restore(
    settings: &BackupSettings,
    database: &str,
    dump: &Path,
    args: &[&str],
) -> Result<(), BackupError> {
    let url = working_url(settings);
    let mut command =
        command(settings, "pg_restore", url, Some(database)).map_err(BackupError::tool)?;
    command
        .args([
            "--no-password",
            "--exit-on-error",
            "--no-owner",
            "--dbname",
            database,
        ])
        .args(args)
        .arg(dump);
    run_to_end(command, "pg_restore").await
}

/// The entries of `pg_restore --list` for `dump` that belong to `tables` (their
/// definitions, data, defaults, constraints, indexes and sequences, as the manifest
/// names them), as a list file's lines.
pub async fn toc_for(
    settings: &BackupSettings,
    dump: &Path,
    tables: &[&TableEntry],
) -> Result<String, BackupError> {
    let output = Command::new(tool(settings, "pg_restore"))
        .arg("--list")
        .arg(dump)
        .output()
        .await
        .map_err(|error| BackupError::tool(format!("pg_restore could not be started: {error}")))?;
    if !output.status.success() {
        return Err(BackupError::Tool(first_line(
            &String::from_utf8_lossy(&output.stderr),
            "pg_restore could not list the dump",
        )));
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    Ok(select_toc(&listing, tables))
}

/// The lines of a `pg_restore --list` listing that belong to `tables`.
pub fn select_toc(listing: &str, tables: &[&TableEntry]) -> String {
    // Longest first, so "TABLE DATA" is not read as "TABLE".
    const KINDS: &[&str] = &[
        "SEQUENCE OWNED BY",
        "FK CONSTRAINT",
        "SEQUENCE SET",
        "TABLE DATA",
        "CONSTRAINT",
        "SEQUENCE",
        "DEFAULT",
        "TRIGGER",
        "INDEX",
        "TABLE",
    ];
    let mut selected = String::new();
    for line in listing.lines() {
        if line.starts_with(';') {
            continue;
        }
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        // "<catalog oid> <object oid> <KIND> <schema> <name…> <owner>"
        let mut words = rest.splitn(3, ' ');
        let (Some(_), Some(_), Some(described)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let Some(kind) = KINDS
            .iter()
            .find(|k| described.starts_with(*k) && described[k.len()..].starts_with(' '))
        else {
            continue;
        };
        let names: Vec<&str> = described[kind.len()..].split_whitespace().collect();
        if names.len() < 3 || names[0] != "public" {
            continue;
        }
        let first = names[1];
        let wanted = tables.iter().any(|table| match *kind {
            "TABLE" | "TABLE DATA" | "DEFAULT" | "CONSTRAINT" | "FK CONSTRAINT" | "TRIGGER" => {
                first == table.name
            }
            _ => table.objects.iter().any(|object| object == first),
        });
        if wanted {
            selected.push_str(line);
            selected.push('\n');
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_line_names_its_table() {
        assert_eq!(
            copy_target(b"COPY public.organizations (id, name) FROM stdin;").as_deref(),
            Some("organizations")
        );
        assert_eq!(
            copy_target(b"COPY public.\"Odd \"\"name\" (id) FROM stdin;").as_deref(),
            Some("Odd \"name")
        );
        assert_eq!(
            copy_target(b"COPY tower_sessions.session (id) FROM stdin;"),
            None
        );
        assert_eq!(copy_target(b"1\tCOPY public.x (id) FROM stdin;"), None);
    }

    #[test]
    fn the_table_of_contents_keeps_exactly_the_chosen_tables_objects() {
        let listing = "\
;
; Archive created at 2026-11-28
215; 1259 16385 TABLE public organizations salvage
216; 1259 16384 SEQUENCE public organizations_id_seq salvage
217; 0 0 SEQUENCE OWNED BY public organizations_id_seq salvage
218; 2604 16388 DEFAULT public organizations id salvage
219; 1259 16390 TABLE public projects salvage
220; 1259 16391 TABLE public organizations_archive salvage
3400; 0 16385 TABLE DATA public organizations salvage
3401; 0 16390 TABLE DATA public projects salvage
3402; 0 0 SEQUENCE SET public organizations_id_seq salvage
3403; 2606 16395 CONSTRAINT public organizations organizations_pkey salvage
3404; 1259 16396 INDEX public organizations_name_idx salvage
3405; 1259 16397 INDEX public projects_org_idx salvage
3406; 2606 16398 FK CONSTRAINT public projects projects_organization_id_fkey salvage
3407; 0 0 ACL - SCHEMA public pg_database_owner
";
        let organizations = TableEntry {
            name: "organizations".into(),
            rows: 0,
            schema_checksum: String::new(),
            own: false,
            objects: vec![
                "organizations_id_seq".into(),
                "organizations_name_idx".into(),
                "organizations_pkey".into(),
            ],
        };
        let selected = select_toc(listing, &[&organizations]);
        let ids: Vec<&str> = selected
            .lines()
            .map(|l| l.split(';').next().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["215", "216", "217", "218", "3400", "3402", "3403", "3404"]
        );
    }

    #[test]
    fn an_older_pg_dump_is_refused_in_plain_words() {
        assert!(check_tool_major("pg_dump (PostgreSQL) 15.18", 15, 15).is_ok());
        assert!(check_tool_major("pg_dump (PostgreSQL) 16.1", 16, 15).is_ok());
        let error = check_tool_major("pg_dump (PostgreSQL) 14.9", 14, 15).unwrap_err();
        assert!(matches!(error, BackupError::Tool(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("older than the server (PostgreSQL 15)"),
            "{error}"
        );
    }
}
