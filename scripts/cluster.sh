#!/usr/bin/env bash
# A local ClickHouse cluster for Salvage's cluster tests: Debian's ZooKeeper 3.8 and two
# ClickHouse servers as one shard with two replicas, all plain processes on 127.0.0.1
# private ports. `scripts/stores.sh start cluster` calls this.
#
#   scripts/cluster.sh start            install what is missing, start all three
#   scripts/cluster.sh stop             stop all three
#   scripts/cluster.sh status
#   scripts/cluster.sh stop-node N      stop replica N (1 or 2): an outage, for the tests
#   scripts/cluster.sh start-node N     start replica N again
#   scripts/cluster.sh env              the settings a Salvage on this cluster needs
#
# Replica 1 answers HTTP on 18131, replica 2 on 18132 (TCP 19131/19132, replication
# 19231/19232); ZooKeeper listens on 22181. The cluster is `salvage_cluster`; macros
# {shard} = 01, {replica} = r1/r2. Data under .stores/cluster/. The `default` user has
# the password of the single local server (.stores/secrets). Safe to run twice.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STORES=${SALVAGE_STORES_DIR:-$ROOT/.stores}
DIR=$STORES/cluster
ZK_PORT=${SALVAGE_ZK_PORT:-22181}
CLUSTER=salvage_cluster

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

http_port() { echo $((18130 + $1)); }
tcp_port() { echo $((19130 + $1)); }
inter_port() { echo $((19230 + $1)); }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $*"; fi
}

ensure_installed() {
  if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
    say "installing zookeeper (apt)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null
  fi
  [ -x /usr/sbin/clickhouse-server ] || command -v clickhouse-server >/dev/null 2>&1 ||
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null
}

ch_bin() { command -v clickhouse-server 2>/dev/null || echo /usr/sbin/clickhouse-server; }

password() {
  [ -f "$STORES/secrets" ] || "$ROOT/scripts/stores.sh" env >/dev/null
  # shellcheck disable=SC1091
  . "$STORES/secrets"
  printf '%s' "$CH_PASSWORD"
}

alive() { local pid; pid=$(cat "$1" 2>/dev/null || true); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_pid() {
  local file=$1 pid i
  alive "$file" || { rm -f "$file"; return 1; }
  pid=$(cat "$file")
  kill -TERM "$pid"
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

# ---------- ZooKeeper ----------

zk_start() {
  mkdir -p "$DIR/zookeeper/data"
  if alive "$DIR/zookeeper/pid"; then say "ZooKeeper already running on 127.0.0.1:$ZK_PORT"; return; fi
  port_free "$ZK_PORT" || die "port $ZK_PORT is taken; set SALVAGE_ZK_PORT"
  cat >"$DIR/zookeeper/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$DIR/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
CFG
  ( cd "$DIR/zookeeper"
    setsid java -Xmx256m -Dzookeeper.log.dir="$DIR/zookeeper" -Dzookeeper.root.logger=WARN,CONSOLE \
      -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
      org.apache.zookeeper.server.ZooKeeperServerMain "$DIR/zookeeper/zoo.cfg" \
      >>"$DIR/zookeeper/out.log" 2>&1 </dev/null &
    echo $! >"$DIR/zookeeper/pid" )
  local i
  for i in $(seq 1 100); do
    # `srvr` names the mode only once the data is loaded and sessions are taken (`ruok`
    # answers earlier, and a ClickHouse started then cannot open its replicated tables).
    if (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT"; printf srvr >&3; timeout 1 cat <&3) 2>/dev/null | grep -q '^Mode:'; then
      say "ZooKeeper started on 127.0.0.1:$ZK_PORT"; return
    fi
    alive "$DIR/zookeeper/pid" || break
    sleep 0.2
  done
  tail -n 20 "$DIR/zookeeper/out.log" >&2 || true
  die "ZooKeeper did not start"
}

# ---------- ClickHouse replicas ----------

node_config() {
  local n=$1 d=$DIR/node$1 pw
  pw=$(password)
  mkdir -p "$d/data/tmp" "$d/data/user_files" "$d/data/format_schemas" "$d/log"
  cat >"$d/config.xml" <<XML
<?xml version="1.0"?>
<!-- Written by scripts/cluster.sh; edits are overwritten at the next start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$d/log/clickhouse-server.log</log>
        <errorlog>$d/log/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$(http_port "$n")</http_port>
    <tcp_port>$(tcp_port "$n")</tcp_port>
    <interserver_http_port>$(inter_port "$n")</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <path>$d/data/</path>
    <tmp_path>$d/data/tmp/</tmp_path>
    <user_files_path>$d/data/user_files/</user_files_path>
    <format_schema_path>$d/data/format_schemas/</format_schema_path>
    <users_config>$d/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
    <zookeeper>
        <node><host>127.0.0.1</host><port>$ZK_PORT</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <remote_servers>
        <$CLUSTER>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>$(tcp_port 1)</port><user>default</user><password>$pw</password></replica>
                <replica><host>127.0.0.1</host><port>$(tcp_port 2)</port><user>default</user><password>$pw</password></replica>
            </shard>
        </$CLUSTER>
    </remote_servers>
    <macros>
        <shard>01</shard>
        <replica>r$n</replica>
    </macros>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
</yandex>
XML
  cat >"$d/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>in_order</load_balancing>
            <distributed_ddl_task_timeout>30</distributed_ddl_task_timeout>
        </default>
    </profiles>
    <users>
        <default>
            <password_sha256_hex>$(printf '%s' "$pw" | sha256sum | cut -d' ' -f1)</password_sha256_hex>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default/></quotas>
</yandex>
XML
  chmod 600 "$d/config.xml" "$d/users.xml"
}

node_start() {
  local n=$1 d=$DIR/node$1 port i
  port=$(http_port "$n")
  if alive "$d/pid"; then say "replica $n already running on 127.0.0.1:$port"; return; fi
  port_free "$port" || die "port $port is taken"
  node_config "$n"
  setsid "$(ch_bin)" --config-file="$d/config.xml" >>"$d/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
  for i in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then
      say "replica $n started on 127.0.0.1:$port"; return
    fi
    alive "$d/pid" || break
    sleep 0.2
  done
  tail -n 20 "$d/log/clickhouse-server.err.log" >&2 2>/dev/null || true
  die "replica $n did not start"
}

node_stop() {
  if stop_pid "$DIR/node$1/pid"; then say "replica $1 stopped"; else say "replica $1 is not running"; fi
}

print_env() {
  cat <<ENV
CLICKHOUSE_URL=http://127.0.0.1:$(http_port 1)
CLICKHOUSE_CLUSTER=$CLUSTER
CLICKHOUSE_USER=default
CLICKHOUSE_PASSWORD=$(password)
SALVAGE_CLUSTER_REPLICA_URLS=http://127.0.0.1:$(http_port 1),http://127.0.0.1:$(http_port 2)
ENV
}

node_arg() {
  case "${1:-}" in 1|2) ;; *) die "which replica: 1 or 2" ;; esac
}

case "${1:-}" in
  start)
    ensure_installed
    command -v curl >/dev/null 2>&1 || die "curl is missing (scripts/stores.sh start installs it)"
    zk_start
    node_start 1
    node_start 2
    ( umask 077; print_env >"$DIR/env" )
    ;;
  stop)
    node_stop 1
    node_stop 2
    if stop_pid "$DIR/zookeeper/pid"; then say "ZooKeeper stopped"; else say "ZooKeeper is not running"; fi
    ;;
  status)
    for n in 1 2; do
      if alive "$DIR/node$n/pid"; then say "replica $n: running on 127.0.0.1:$(http_port "$n")"; else say "replica $n: stopped"; fi
    done
    if alive "$DIR/zookeeper/pid"; then say "zookeeper: running on 127.0.0.1:$ZK_PORT"; else say "zookeeper: stopped"; fi
    ;;
  stop-node) node_arg "${2:-}"; node_stop "$2" ;;
  start-node) node_arg "${2:-}"; node_start "$2" ;;
  env) print_env ;;
  *) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
