#!/usr/bin/env bash
# Local PostgreSQL 15 and ClickHouse for Salvage, as plain processes on 127.0.0.1.
#
#   scripts/stores.sh start  [postgres|clickhouse]   install what is missing, start, write .env
#   scripts/stores.sh stop   [postgres|clickhouse]   stop what this script started (pid files)
#   scripts/stores.sh status [postgres|clickhouse]
#   scripts/stores.sh env                            print the settings it writes to .env
#   scripts/stores.sh start|stop|status cluster      a local ClickHouse cluster for the
#                                                    cluster tests (scripts/cluster.sh)
#
# Data lives under .stores/ (ignored by git). Ports are not the defaults, so a system
# PostgreSQL or ClickHouse keeps running undisturbed; override them with
# SALVAGE_PG_PORT, SALVAGE_CH_HTTP_PORT and SALVAGE_CH_TCP_PORT (and the folder and the
# settings file with SALVAGE_STORES_DIR and SALVAGE_ENV_FILE). Safe to run twice.
#
# Nothing is open: PostgreSQL asks every connection for a password (scram-sha-256), and
# Salvage gets two roles, `salvage_owner` (owns the schema; migrations) and
# `salvage_app` (everyday work; may not change or delete the history). ClickHouse's
# `default` user has a password. The passwords are generated once and kept in
# .stores/secrets; .env (mode 0600) carries them. Stores made by an older version of
# this script (trust, no passwords) are upgraded in place at the next start.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STORES=${SALVAGE_STORES_DIR:-$ROOT/.stores}
PG_PORT=${SALVAGE_PG_PORT:-54329}
CH_HTTP_PORT=${SALVAGE_CH_HTTP_PORT:-18123}
CH_TCP_PORT=${SALVAGE_CH_TCP_PORT:-19000}
PG_DIR=$STORES/postgres
CH_DIR=$STORES/clickhouse
PG_DB=salvage
ENV_FILE=${SALVAGE_ENV_FILE:-$ROOT/.env}

SECRETS=$STORES/secrets

say() { printf 'stores: %s\n' "$*"; }
die() { printf 'stores: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install it yourself, or run as root)"; fi
}

apt_install() {
  say "installing $* (apt)"
  if [ ! -f "$STORES/.apt-updated" ]; then
    as_root apt-get update -qq
    mkdir -p "$STORES" && touch "$STORES/.apt-updated"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------- secrets ----------

new_password() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Generates the passwords once; later runs read them back.
load_secrets() {
  mkdir -p "$STORES"
  if [ ! -f "$SECRETS" ]; then
    ( umask 077
      { echo "PG_SUPERUSER_PASSWORD=$(new_password)"
        echo "PG_OWNER_PASSWORD=$(new_password)"
        echo "PG_APP_PASSWORD=$(new_password)"
        echo "CH_PASSWORD=$(new_password)"; } >"$SECRETS" )
  fi
  # Added after the first version of this file: appended to one made before.
  if ! grep -q '^WEBHOOK_SECRET_KEY=' "$SECRETS"; then
    echo "WEBHOOK_SECRET_KEY=local-$(date +%Y%m%d):$(head -c 32 /dev/urandom | base64 -w0)" >>"$SECRETS"
  fi
  if ! grep -q '^BACKUP_SIGNING_KEY=' "$SECRETS"; then
    echo "BACKUP_SIGNING_KEY=local-$(date +%Y%m%d):$(head -c 32 /dev/urandom | base64 -w0)" >>"$SECRETS"
  fi
  if ! grep -q '^BACKUP_AGE_IDENTITY=' "$SECRETS"; then
    command -v age-keygen >/dev/null 2>&1 || apt_install age
    echo "BACKUP_AGE_IDENTITY=$(age-keygen 2>/dev/null | grep '^AGE-SECRET-KEY-')" >>"$SECRETS"
  fi
  if ! grep -q '^PGBACKREST_CIPHER_PASS=' "$SECRETS"; then
    echo "PGBACKREST_CIPHER_PASS=$(new_password)" >>"$SECRETS"
  fi
  chmod 600 "$SECRETS"
  # shellcheck disable=SC1090
  . "$SECRETS"
}

# ---------- PostgreSQL ----------

pg_bin() {
  # Prefer binaries on PATH (the machine's /usr/local/bin), then Debian's layout.
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/$name" ] && { echo "$dir/$name"; return; }
  done
  return 1
}

pg_ensure_installed() {
  if ! pg_bin initdb >/dev/null || ! pg_bin pg_ctl >/dev/null; then
    apt_install postgresql-15 postgresql-client-15 || apt_install postgresql postgresql-client
  fi
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
}

# PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
pg_run() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

pg_running() {
  [ -f "$PG_DIR/data/postmaster.pid" ] && pg_run "$(pg_bin pg_ctl)" -D "$PG_DIR/data" status >/dev/null 2>&1
}

pg_start() {
  pg_ensure_installed
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_DIR"; fi
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in ${PG_DIR#$ROOT/}/data"
    local pwfile="$PG_DIR/.initdb-password"
    ( umask 077; printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pwfile" )
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$pwfile"; fi
    pg_run "$(pg_bin initdb)" -D "$PG_DIR/data" -U postgres --auth=scram-sha-256 \
      --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
  fi
  archive_settings
  if pg_running && ! archive_settings_live; then
    say "restarting PostgreSQL: its WAL archiving settings changed"
    pg_run "$(pg_bin pg_ctl)" -D "$PG_DIR/data" -m fast -w stop >/dev/null
  fi
  if pg_running; then
    say "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    port_free "$PG_PORT" || die "port $PG_PORT is taken by another program; set SALVAGE_PG_PORT"
    pg_run "$(pg_bin pg_ctl)" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on" \
      start >/dev/null || { tail -n 20 "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
    say "PostgreSQL started on 127.0.0.1:$PG_PORT"
  fi
  pg_require_passwords
  # Again: upgrading an old cluster to passwords rewrote pg_hba.conf without it.
  pg_peer_for_postgres
  pg_roles_and_database
  archive_stanza
}

psql_admin() {
  PGPASSWORD=$PG_SUPERUSER_PASSWORD psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "${PGDB:-postgres}" "$@"
}

# A cluster from an older version of this script trusts every local connection: give the
# superuser its password, then ask everyone for one.
pg_require_passwords() {
  local hba="$PG_DIR/data/pg_hba.conf"
  grep -Eq '^[[:space:]]*(local|host)[^#]*[[:space:]]trust([[:space:]]|$)' "$hba" || return 0
  say "upgrading the PostgreSQL cluster: passwords (scram-sha-256) instead of trust"
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "set password_encryption = 'scram-sha-256'" \
    -c "alter role postgres password '$PG_SUPERUSER_PASSWORD'" >/dev/null
  local rewritten="$hba.salvage"
  cat >"$rewritten" <<HBA
# Written by scripts/stores.sh: every connection gives a password.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
HBA
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$rewritten"; fi
  mv "$rewritten" "$hba"
  pg_run "$(pg_bin pg_ctl)" -D "$PG_DIR/data" reload >/dev/null
  sleep 0.5
}

# The owner and application roles, the database owned by the owner, and (for a database
# an older version created as the superuser) everything in it handed to the owner.
pg_roles_and_database() {
  psql_admin -q >/dev/null <<SQL
set client_min_messages = warning;
set password_encryption = 'scram-sha-256';
do \$\$ begin
  if not exists (select 1 from pg_roles where rolname = 'salvage_owner') then
    create role salvage_owner login createdb;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'salvage_app') then
    create role salvage_app login;
  end if;
end \$\$;
alter role salvage_owner password '$PG_OWNER_PASSWORD' nosuperuser createdb;
alter role salvage_app password '$PG_APP_PASSWORD' nosuperuser nocreatedb nocreaterole;
-- Lets the owner end the application role's connections (dropping a test database).
grant pg_signal_backend to salvage_owner;
SQL
  if ! psql_admin -tAc "select 1 from pg_database where datname = '$PG_DB'" | grep -q 1; then
    psql_admin -qc "create database $PG_DB owner salvage_owner" >/dev/null
  fi
  # Every database Salvage made here (its own, and the e2e, bench and test databases an
  # older version left as the superuser's) belongs to the owner, who may drop them.
  psql_admin -q >/dev/null <<'SQL'
do $$ declare db record; begin
  for db in select datname from pg_database
             where not datistemplate and datname <> 'postgres'
               and pg_get_userbyid(datdba) <> 'salvage_owner'
  loop
    execute format('alter database %I owner to salvage_owner', db.datname);
  end loop;
end $$;
SQL
  PGDB=$PG_DB psql_admin -q >/dev/null <<'SQL'
do $$ declare object record; begin
  for object in
    select format('alter table %I.%I owner to salvage_owner', schemaname, tablename) as sql
      from pg_tables where schemaname = 'public' and tableowner <> 'salvage_owner'
    union all
    select format('alter view %I.%I owner to salvage_owner', schemaname, viewname)
      from pg_views where schemaname = 'public' and viewowner <> 'salvage_owner'
    union all
    select format('alter function %s owner to salvage_owner', p.oid::regprocedure)
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'public' and pg_get_userbyid(p.proowner) <> 'salvage_owner'
  loop
    execute object.sql;
  end loop;
end $$;
SQL
}

pg_stop() {
  if pg_running; then
    pg_run "$(pg_bin pg_ctl)" -D "$PG_DIR/data" -m fast -w stop >/dev/null
    say "PostgreSQL stopped"
  else
    say "PostgreSQL is not running (from ${PG_DIR#$ROOT/})"
  fi
}

pg_status() {
  if pg_running; then say "postgres: running on 127.0.0.1:$PG_PORT"; else say "postgres: stopped"; fi
}

# ---------- WAL archiving (pgBackRest) ----------
# The local cluster archives its WAL through pgBackRest from its first minute, into an
# encrypted repository under .stores/pgbackrest (SALVAGE_PG_ARCHIVE=off: no archiving).
# Every pgBackRest command runs as the OS user PostgreSQL runs as, so the repository has
# one owner; that user reaches the server over its socket by peer authentication.

PGBR_DIR=$STORES/pgbackrest
PGBR_CONF=$PGBR_DIR/pgbackrest.conf
PGBR_STANZA=salvage
ARCHIVE_TIMEOUT=${SALVAGE_ARCHIVE_TIMEOUT_SECS:-60}
ARCHIVE_CONF=salvage-archive.conf

archiving() { [ "${SALVAGE_PG_ARCHIVE:-on}" != off ]; }

# The repository's configuration and the server's archive settings, written on every
# start (the include line is added to postgresql.conf once).
archive_settings() {
  local conf="$PG_DIR/data/$ARCHIVE_CONF"
  if ! archiving; then
    printf '# Written by scripts/stores.sh: archiving is off (SALVAGE_PG_ARCHIVE=off).\n' >"$conf"
  else
    command -v pgbackrest >/dev/null 2>&1 || apt_install pgbackrest
    mkdir -p "$PGBR_DIR/repo" "$PGBR_DIR/log" "$PGBR_DIR/lock" "$PGBR_DIR/spool" \
      "$PGBR_DIR/side"
    ( umask 077
      cat >"$PGBR_CONF" <<CONF
# Written by scripts/stores.sh: the local PostgreSQL's WAL archive and backups.
[global]
repo1-path=$PGBR_DIR/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$PGBACKREST_CIPHER_PASS
repo1-retention-full=2
# lz4: a fraction of gzip's CPU (pgBackRest's default), so archiving and backups leave a
# small machine's cores to the console, and restores decompress faster.
compress-type=lz4
log-path=$PGBR_DIR/log
lock-path=$PGBR_DIR/lock
spool-path=$PGBR_DIR/spool
log-level-console=warn
log-level-file=info
start-fast=y

[$PGBR_STANZA]
pg1-path=$PG_DIR/data
pg1-port=$PG_PORT
pg1-socket-path=$PG_DIR
pg1-user=postgres
CONF
    )
    cat >"$conf" <<CONF
# Written by scripts/stores.sh on every start: WAL archiving through pgBackRest.
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$PGBR_CONF --stanza=$PGBR_STANZA archive-push %p'
archive_timeout = $ARCHIVE_TIMEOUT
CONF
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$PGBR_DIR"; fi
  fi
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$conf"; fi
  grep -q "^include_if_exists = '$ARCHIVE_CONF'" "$PG_DIR/data/postgresql.conf" ||
    printf "\ninclude_if_exists = '%s'\n" "$ARCHIVE_CONF" >>"$PG_DIR/data/postgresql.conf"
  pg_peer_for_postgres
}

# Whether the running server already has the archive mode the file asks for (changing
# it needs a restart; the command and timeout follow a reload).
archive_settings_live() {
  local live want=off
  archiving && want=on
  live=$(psql_admin -tAc "show archive_mode" 2>/dev/null) || return 1
  [ "$live" = "$want" ] || return 1
  pg_run "$(pg_bin pg_ctl)" -D "$PG_DIR/data" reload >/dev/null
}

# pgBackRest connects as the OS user `postgres` over the socket: peer authentication
# for that one user, every other connection still gives a password.
pg_peer_for_postgres() {
  local hba="$PG_DIR/data/pg_hba.conf"
  grep -q '^local[[:space:]]\+all[[:space:]]\+postgres[[:space:]]\+peer' "$hba" && return 0
  { printf '# Written by scripts/stores.sh: pgBackRest, as the OS user postgres.\n'
    printf 'local   all   postgres             peer\n'
    cat "$hba"; } >"$hba.salvage"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$hba.salvage"; fi
  mv "$hba.salvage" "$hba"
  if pg_running; then
    pg_run "$(pg_bin pg_ctl)" -D "$PG_DIR/data" reload >/dev/null
    sleep 0.5 # the reload is signalled, not waited for
  fi
}

# The stanza, made once (pgBackRest's stanza-create is a no-op when it exists and is
# valid); a repository left by an older cluster is set aside, since it cannot serve
# this one.
archive_stanza() {
  archiving || return 0
  local out
  if ! out=$(pg_run pgbackrest --config="$PGBR_CONF" --stanza="$PGBR_STANZA" stanza-create 2>&1); then
    if printf '%s' "$out" | grep -q '\[028\]'; then
      local aside
      aside="$PGBR_DIR/repo.$(date +%Y%m%d%H%M%S)"
      say "the pgBackRest repository belongs to another cluster: kept as ${aside#$ROOT/}"
      mv "$PGBR_DIR/repo" "$aside"
      mkdir -p "$PGBR_DIR/repo"
      if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PGBR_DIR/repo"; fi
      out=$(pg_run pgbackrest --config="$PGBR_CONF" --stanza="$PGBR_STANZA" stanza-create 2>&1) ||
        die "pgBackRest stanza-create failed: $out"
    else
      die "pgBackRest stanza-create failed: $out"
    fi
  fi
  # A window needs a base backup: the first one is taken here, so the console has a
  # point-in-time window from its first minute (the pitr-backup job keeps it after).
  if pg_run pgbackrest --config="$PGBR_CONF" --stanza="$PGBR_STANZA" info --output=json 2>/dev/null |
    grep -q '"backup":\[\]'; then
    say "taking the first pgBackRest base backup (full)"
    out=$(pg_run pgbackrest --config="$PGBR_CONF" --stanza="$PGBR_STANZA" backup --type=full 2>&1) ||
      die "pgBackRest's first backup failed: $out"
  fi
  say "WAL archived through pgBackRest (stanza $PGBR_STANZA, ${PGBR_DIR#$ROOT/}/repo)"
}

# ---------- ClickHouse ----------

ch_server_bin() {
  local candidate
  for candidate in clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
    command -v "$candidate" >/dev/null 2>&1 && { command -v "$candidate"; return; }
  done
  return 1
}

ch_ensure_installed() {
  ch_server_bin >/dev/null || apt_install clickhouse-server clickhouse-client
}

ch_write_config() {
  mkdir -p "$CH_DIR/etc" "$CH_DIR/data/tmp" "$CH_DIR/data/user_files" "$CH_DIR/data/format_schemas" "$CH_DIR/log"
  cat >"$CH_DIR/etc/config.xml" <<XML
<?xml version="1.0"?>
<!-- Written by scripts/stores.sh; edits are overwritten at the next start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$CH_DIR/log/clickhouse-server.log</log>
        <errorlog>$CH_DIR/log/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/data/tmp/</tmp_path>
    <user_files_path>$CH_DIR/data/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/data/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/etc/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>536870912</mark_cache_size>
    <max_concurrent_queries>200</max_concurrent_queries>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
XML
  cat >"$CH_DIR/etc/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password_sha256_hex>$(printf '%s' "$CH_PASSWORD" | sha256sum | cut -d' ' -f1)</password_sha256_hex>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default/>
    </quotas>
</yandex>
XML
}

ch_pid() { cat "$CH_DIR/clickhouse.pid" 2>/dev/null || true; }

ch_running() {
  local pid; pid=$(ch_pid)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

ch_answers_with_password() {
  curl -fsS "http://127.0.0.1:$CH_HTTP_PORT/?user=default&password=$CH_PASSWORD" \
    --data-binary "SELECT 1" >/dev/null 2>&1
}

ch_start() {
  ch_ensure_installed
  if ch_running; then
    if ! ch_answers_with_password; then
      # An older version ran it without a password: ClickHouse rereads users.xml.
      say "upgrading ClickHouse: the default user gets a password"
      ch_write_config
      local i
      for i in $(seq 1 50); do ch_answers_with_password && break; sleep 0.2; done
      ch_answers_with_password || die "ClickHouse did not take its new password"
    fi
    say "ClickHouse already running on 127.0.0.1:$CH_HTTP_PORT"
    return
  fi
  port_free "$CH_HTTP_PORT" || die "port $CH_HTTP_PORT is taken by another program; set SALVAGE_CH_HTTP_PORT"
  port_free "$CH_TCP_PORT" || die "port $CH_TCP_PORT is taken by another program; set SALVAGE_CH_TCP_PORT"
  ch_write_config
  # setsid: the server outlives this script and the terminal that ran it.
  setsid "$(ch_server_bin)" --config-file="$CH_DIR/etc/config.xml" \
    >>"$CH_DIR/log/stdout.log" 2>&1 < /dev/null &
  echo $! >"$CH_DIR/clickhouse.pid"
  local i
  for i in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$CH_HTTP_PORT/ping" >/dev/null 2>&1; then
      say "ClickHouse started on 127.0.0.1:$CH_HTTP_PORT"
      return
    fi
    ch_running || break
    sleep 0.2
  done
  tail -n 20 "$CH_DIR/log/clickhouse-server.err.log" "$CH_DIR/log/stdout.log" >&2 2>/dev/null || true
  die "ClickHouse did not start"
}

ch_stop() {
  if ! ch_running; then
    say "ClickHouse is not running (from ${CH_DIR#$ROOT/})"
    rm -f "$CH_DIR/clickhouse.pid"
    return
  fi
  local pid i; pid=$(ch_pid)
  kill -TERM "$pid"
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$CH_DIR/clickhouse.pid"
  say "ClickHouse stopped"
}

ch_status() {
  if ch_running; then say "clickhouse: running on 127.0.0.1:$CH_HTTP_PORT (pid $(ch_pid))"; else say "clickhouse: stopped"; fi
}

# ---------- shared ----------

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

print_env() {
  cat <<ENV
DATABASE_URL=postgres://salvage_app:$PG_APP_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
SALVAGE_MIGRATE_DATABASE_URL=postgres://salvage_owner:$PG_OWNER_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT
CLICKHOUSE_DATABASE=salvage
CLICKHOUSE_USER=default
CLICKHOUSE_PASSWORD=$CH_PASSWORD
SALVAGE_ADDR=${SALVAGE_ADDR:-127.0.0.1:3000}
SALVAGE_PUBLIC_URL=${SALVAGE_PUBLIC_URL:-http://${SALVAGE_ADDR:-127.0.0.1:3000}}
SALVAGE_BACKUP_DIR=$STORES/backups
SALVAGE_CH_TCP_PORT=$CH_TCP_PORT
SALVAGE_WEBHOOK_SECRET_KEYS=$WEBHOOK_SECRET_KEY
SALVAGE_BACKUP_SIGNING_KEYS=$BACKUP_SIGNING_KEY
SALVAGE_BACKUP_AGE_IDENTITY=$BACKUP_AGE_IDENTITY
ENV
  if archiving; then
    cat <<ENV
SALVAGE_PGBACKREST_CONFIG=$PGBR_CONF
SALVAGE_PGBACKREST_STANZA=$PGBR_STANZA
SALVAGE_ARCHIVE_TIMEOUT_SECS=$ARCHIVE_TIMEOUT
ENV
    if [ "$(id -u)" -eq 0 ]; then echo "SALVAGE_PGBACKREST_RUN_AS=postgres"; fi
  fi
}

write_env() {
  ( umask 077
    { echo "# Written by scripts/stores.sh for the local stores (it holds their passwords:"
      echo "# keep it private). Variables set in the environment take precedence."
      print_env; } >"$ENV_FILE" )
  chmod 600 "$ENV_FILE"
}

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

action=${1:-}
which=${2:-all}
load_secrets
case "$which" in
  all|postgres|clickhouse) ;;
  cluster) exec "$ROOT/scripts/cluster.sh" "$action" ;;
  *) usage ;;
esac

case "$action" in
  start)
    command -v curl >/dev/null 2>&1 || apt_install curl
    [ "$which" = clickhouse ] || pg_start
    [ "$which" = postgres ] || ch_start
    write_env
    ;;
  stop)
    if [ "$which" = all ] && [ -d "$STORES/cluster" ]; then "$ROOT/scripts/cluster.sh" stop; fi
    [ "$which" = postgres ] || ch_stop
    [ "$which" = clickhouse ] || pg_stop
    ;;
  status)
    [ "$which" = clickhouse ] || pg_status
    [ "$which" = postgres ] || ch_status
    ;;
  env) print_env ;;
  *) usage ;;
esac
