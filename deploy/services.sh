#!/usr/bin/env bash
# Telemeter local infrastructure: Mosquitto (MQTT) + Apache Kafka (KRaft, single node),
# both refusing anyone who does not log in.
#
# Usage: deploy/services.sh up|down|status|start-mosquitto|stop-mosquitto|restart-mosquitto|
#                           auth-mosquitto|kill-mosquitto|start-kafka|stop-kafka|kill-kafka|fetch-kafka
#
#   up                 install missing packages, fetch Kafka, start both, wait until ready
#   cluster-up / cluster-down / cluster-status / cluster-bootstrap / cluster-kill-N /
#   cluster-start-N    a 3-node Kafka beside them (below: "A 3-node Kafka"), N = 1, 2, 3
#   auth-mosquitto     (re)write the broker's service users and dev PKI, reload it if running
#   down               stop what this script started (SIGTERM, 30 s, then SIGKILL)
#   status             one line per service; exit 0 only if both are reachable
#   start-mosquitto / stop-mosquitto / restart-mosquitto (graceful, same persistence)
#   kill-mosquitto     kill -9 our Mosquitto (to measure what a broker crash loses)
#   start-kafka / stop-kafka
#   kill-kafka         kill -9 our Kafka (chaos tests); start-kafka reuses its data dir
#   fetch-kafka        download Kafka jars from Maven Central into the shared cache
#
# Environment: the names Telemeter's settings read (telemeter/config.py), so one exported
# variable moves the service and the app together:
#   TELEMETER_RUN_DIR               runtime state (pids, logs, data)   [<repo>/.run]
#   TELEMETER_PKI_DIR               dev CA + broker certificate        [<run dir>/pki]
#   TELEMETER_MQTT__PORT            Mosquitto port, password logins    [1883]
#   TELEMETER_MQTT__TLS_PORT        Mosquitto port, mutual TLS         [8883]
#   TELEMETER_MQTT__TLS_PASSWORD_PORT Mosquitto port, TLS + password   [8884]
#   TELEMETER_MQTT__PASSWORD        the bridges' password              [deploy/dev-secrets.env]
#   TELEMETER_MQTT__TOPIC_PREFIX    prefix of devices/+/telemetry      []
#   TELEMETER_KAFKA__<ROLE>__USERNAME / __PASSWORD (ROLE = ADMIN, BRIDGE, AGGREGATOR, API)
#                                   Kafka's SASL users                 [deploy/dev-secrets.env]
#   TELEMETER_KAFKA__BOOTSTRAP      Kafka client address: 127.0.0.1:<port> or localhost:<port>
#                                   (the first entry's port is used)   [127.0.0.1:9092]
# and a few only this script reads:
#   TELEMETER_CACHE_DIR             shared jar cache                   [~/.cache/telemeter]
#   TELEMETER_BROKER_BRIDGE_USERS   the bridges' MQTT users            [telemeter-bridge-0..3]
#   TELEMETER_DOWNLINK__USERNAME    the command dispatcher's MQTT user [telemeter-commands]
#   TELEMETER_KAFKA_CONTROLLER_PORT Kafka KRaft controller port        [9093]
#   TELEMETER_WAIT_TIMEOUT          seconds to wait for readiness      [60]
#   TELEMETER_PYTHON                Python with Telemeter installed    [<repo>/.venv/bin/python]
# Deprecated (read for one more release, with a warning; the app never read them):
# TELEMETER_MQTT_PORT, TELEMETER_MQTT_TLS_PORT, TELEMETER_MQTT_TLS_PASSWORD_PORT and
# TELEMETER_KAFKA_PORT; the names above win when both are set.
#
# Everything listens on 127.0.0.1 only. If a port is already open (a service
# started by another clone, by hand, or by the OS), it is reused, not restarted.
# Kafka's users are written into its metadata when its data dir is formatted; when they
# change, the (dev) data dir is formatted again and its topics are lost.
set -euo pipefail

KAFKA_VERSION=4.2.0   # keep in sync with deploy/kafka/pom.xml

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")
RUN_DIR=${TELEMETER_RUN_DIR:-$REPO_DIR/.run}
CACHE_DIR=${TELEMETER_CACHE_DIR:-$HOME/.cache/telemeter}
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs

# The dev defaults of every secret (public, refused by Telemeter outside dev); the
# environment wins over the file.
while IFS='=' read -r key value; do
    [[ $key =~ ^TELEMETER_[A-Z_]+$ ]] || continue
    [[ -n ${!key+set} ]] || export "$key=$value"
done <"$SCRIPT_DIR/dev-secrets.env"

HOST=127.0.0.1

log() { printf '%s\n' "$*"; }
die() { printf 'services.sh: error: %s\n' "$*" >&2; exit 1; }

# setting new-name deprecated-name default -> the value of the first that is set
setting() {
    local new=$1 old=$2 default=$3
    if [[ -n ${!old+set} ]]; then
        printf 'services.sh: warning: %s is deprecated: use %s (the app reads it too)\n' \
            "$old" "$new" >&2
    fi
    if [[ -n ${!new+set} ]]; then
        printf '%s' "${!new}"
    else
        printf '%s' "${!old:-$default}"
    fi
}

# Kafka's port is the one the app connects to: the first entry of TELEMETER_KAFKA__BOOTSTRAP.
kafka_port() {
    local first host
    if [[ -z ${TELEMETER_KAFKA__BOOTSTRAP:-} ]]; then
        setting TELEMETER_KAFKA__BOOTSTRAP TELEMETER_KAFKA_PORT 9092
        return
    fi
    first=${TELEMETER_KAFKA__BOOTSTRAP%%,*}
    host=${first%:*}
    [[ $host == "$HOST" || $host == localhost ]] ||
        die "TELEMETER_KAFKA__BOOTSTRAP=$TELEMETER_KAFKA__BOOTSTRAP: this script runs Kafka on $HOST only (use $HOST:<port>)"
    printf '%s' "${first##*:}"
}

MQTT_PORT=$(setting TELEMETER_MQTT__PORT TELEMETER_MQTT_PORT 1883)
MQTT_TLS_PORT=$(setting TELEMETER_MQTT__TLS_PORT TELEMETER_MQTT_TLS_PORT 8883)
MQTT_TLS_PW_PORT=$(setting TELEMETER_MQTT__TLS_PASSWORD_PORT TELEMETER_MQTT_TLS_PASSWORD_PORT 8884)
BRIDGE_USERS=${TELEMETER_BROKER_BRIDGE_USERS:-telemeter-bridge-0 telemeter-bridge-1 telemeter-bridge-2 telemeter-bridge-3}
COMMAND_USER=${TELEMETER_DOWNLINK__USERNAME:-telemeter-commands}
TOPIC_PREFIX=${TELEMETER_MQTT__TOPIC_PREFIX:-}
PYTHON_BIN=${TELEMETER_PYTHON:-$REPO_DIR/.venv/bin/python}
KAFKA_ROLES=(ADMIN BRIDGE AGGREGATOR API)
KAFKA_PORT=$(kafka_port) || exit 1
KAFKA_CONTROLLER_PORT=${TELEMETER_KAFKA_CONTROLLER_PORT:-9093}
WAIT_TIMEOUT=${TELEMETER_WAIT_TIMEOUT:-60}
STOP_TIMEOUT=30

# /usr/sbin holds the mosquitto binary on Debian and is not on every user's PATH.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

for p in "$MQTT_PORT" "$MQTT_TLS_PORT" "$MQTT_TLS_PW_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$WAIT_TIMEOUT"; do
    [[ $p =~ ^[0-9]+$ ]] || die "not a number: '$p' (check the TELEMETER_*PORT variables and TELEMETER_KAFKA__BOOTSTRAP)"
done

# --------------------------------------------------------------------------
# Paths (RUN_DIR made absolute: it is written into generated config files)
# --------------------------------------------------------------------------
init_run_dir() {
    mkdir -p "$RUN_DIR"
    RUN_DIR=$(cd "$RUN_DIR" && pwd)
    MOSQ_DIR=$RUN_DIR/mosquitto
    MOSQ_CONF=$MOSQ_DIR/mosquitto.conf
    MOSQ_PID=$MOSQ_DIR/mosquitto.pid
    MOSQ_LOG=$MOSQ_DIR/mosquitto.log
    AUTH_DIR=$MOSQ_DIR/auth
    PKI_DIR=${TELEMETER_PKI_DIR:-$RUN_DIR/pki}
    KAFKA_DIR=$RUN_DIR/kafka
    KAFKA_DATA=$KAFKA_DIR/data
    KAFKA_PROPS=$KAFKA_DIR/server.properties
    KAFKA_PID=$KAFKA_DIR/kafka.pid
    KAFKA_OUT=$KAFKA_DIR/kafka.out
    mkdir -p "$MOSQ_DIR/data" "$AUTH_DIR" "$KAFKA_DATA"
    chmod 700 "$AUTH_DIR"
}

# Serialize state-changing commands of this clone (two concurrent `up`s would
# otherwise both start a broker). fd 8 is closed in every daemon we spawn so the
# lock is released when this script exits.
take_lock() {
    exec 8>"$RUN_DIR/.services.lock"
    flock -w 180 8 || die "another services.sh is still running for $RUN_DIR"
}

# --------------------------------------------------------------------------
# Process / port helpers
# --------------------------------------------------------------------------
port_open() {  # port -> 0 if something accepts TCP connections on 127.0.0.1:port
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

pid_alive() {  # pid -> 0 if running (a zombie counts as dead)
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [[ -n $state && $state != Z && $state != X ]]
}

# pidfile pattern -> print pid if the file names a live process whose command
# line contains pattern (our generated config path: guards against a recycled
# pid and against another clone's broker); else fail.
our_pid() {
    local file=$1 pattern=$2 pid cmd
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] && pid_alive "$pid" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$pattern"* ]] || return 1
    echo "$pid"
}

# pid name -> SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL.
stop_pid() {
    local pid=$1 name=$2 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        pid_alive "$pid" || { log "$name: stopped (pid $pid)"; return 0; }
        sleep 0.2
    done
    log "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || { log "$name: killed (pid $pid)"; return 0; }
        sleep 0.2
    done
    die "$name: pid $pid survived SIGKILL"
}

sed_escape() {  # escape a string for the replacement side of s|...|...|
    printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'
}

# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------
APT_UPDATED=0
ensure_packages() {
    # command -> Debian package; only what is missing gets installed.
    # chromium: the console's browser tests and the demo's look at it (devices/browser.py);
    # docker-compose and promtool (prometheus): tests/deploy/ validate deploy/'s files.
    local -A pkg_of=([mosquitto]=mosquitto [mosquitto_sub]=mosquitto-clients
                     [mosquitto_pub]=mosquitto-clients [kcat]=kcat [chromium]=chromium
                     [docker-compose]=docker-compose [promtool]=prometheus)
    local cmd missing=()
    for cmd in mosquitto mosquitto_sub mosquitto_pub kcat chromium docker-compose promtool; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [[ $(id -u) -eq 0 ]] ||
        die "missing packages: ${missing[*]}; install them as root: apt-get install -y ${missing[*]}"
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ $APT_UPDATED -eq 0 ]]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq "${missing[@]}" >/dev/null
    # On a systemd machine the Debian package starts its own broker on 1883 with
    # the stock config (max_queued_messages 1000 => silent drops). We just
    # installed it, so turn that instance off; ours is started from our config.
    if [[ " ${missing[*]} " == *" mosquitto "* && -d /run/systemd/system ]]; then
        systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
        log "packages: disabled the system mosquitto.service (services.sh runs its own)"
    fi
}

ensure_java() {
    command -v java >/dev/null 2>&1 ||
        die "java not found (Kafka $KAFKA_VERSION needs Java 17+): apt-get install -y openjdk-17-jre-headless"
}

# --------------------------------------------------------------------------
# Kafka jars (Maven Central -> shared cache)
# --------------------------------------------------------------------------
count_jars() { find "$KAFKA_LIBS" -maxdepth 1 -name '*.jar' | wc -l; }

kafka_libs_ok() {
    compgen -G "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
}

fetch_kafka() {
    if kafka_libs_ok; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found: apt-get install -y maven"
    mkdir -p "$KAFKA_HOME"
    # Several clones share the cache: one fetch at a time (fd 9 = cache lock).
    exec 9>"$KAFKA_HOME/.fetch.lock"
    flock -w 600 9 || die "timed out waiting for another Kafka fetch ($KAFKA_HOME/.fetch.lock)"
    if kafka_libs_ok; then   # someone else finished while we waited
        exec 9>&-
        return 0
    fi
    log "kafka: fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
    local tmp
    tmp=$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")
    if ! mvn -q -B -f "$SCRIPT_DIR/kafka/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/fetch.log" 2>&1; then
        tail -n 30 "$KAFKA_HOME/fetch.log" >&2
        rm -rf "$tmp"
        die "kafka: mvn dependency:copy-dependencies failed (log: $KAFKA_HOME/fetch.log)"
    fi
    compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || {
        rm -rf "$tmp"
        die "kafka: fetch incomplete (no kafka_2.13-$KAFKA_VERSION.jar)"
    }
    # Publish atomically: a half-written libs dir is never mistaken for complete.
    chmod 755 "$tmp"   # mktemp -d creates it 0700
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    exec 9>&-
    log "kafka: $(count_jars) jars cached in $KAFKA_LIBS"
}

# --------------------------------------------------------------------------
# Mosquitto
# --------------------------------------------------------------------------
mosq_pid() { our_pid "$MOSQ_PID" "$MOSQ_CONF"; }

render_mosquitto_conf() {
    sed -e "s|@PORT@|$MQTT_PORT|g" \
        -e "s|@TLS_PORT@|$MQTT_TLS_PORT|g" \
        -e "s|@TLS_PW_PORT@|$MQTT_TLS_PW_PORT|g" \
        -e "s|@RUN_DIR@|$(sed_escape "$MOSQ_DIR")|g" \
        -e "s|@AUTH_DIR@|$(sed_escape "$AUTH_DIR")|g" \
        -e "s|@PKI_DIR@|$(sed_escape "$PKI_DIR")|g" \
        -e "s|@USER@|$(sed_escape "$(id -un)")|g" \
        "$SCRIPT_DIR/mosquitto/mosquitto.conf" >"$MOSQ_CONF.tmp"
    mv "$MOSQ_CONF.tmp" "$MOSQ_CONF"
}

# The dev PKI (device CA, broker certificate, empty CRL) and the bridges' users, then
# passwd/acl = service part + device part (the device part is the API's,
# identity/mosquitto.py, which merges the same way under the same lock).
write_broker_auth() {
    [[ -x $PYTHON_BIN ]] || die "no Python with Telemeter at $PYTHON_BIN (run: make install)"
    "$PYTHON_BIN" -m identity.dev_pki "$PKI_DIR" "$AUTH_DIR" ||
        die "mosquitto: could not create the dev PKI in $PKI_DIR"
    local user tmp_pw tmp_acl
    tmp_pw=$(mktemp "$AUTH_DIR/.service.passwd.XXXXXX")
    tmp_acl=$(mktemp "$AUTH_DIR/.service.acl.XXXXXX")
    {
        echo "# Service users: written by deploy/services.sh; the device users follow."
        for user in $BRIDGE_USERS; do
            printf 'user %s\ntopic read %sdevices/+/telemetry\n\n' "$user" "$TOPIC_PREFIX"
        done
        # The command dispatcher (downlink/dispatcher.py): commands out, answers in.
        printf 'user %s\ntopic write %sdevices/+/commands\ntopic read %sdevices/+/commands/result\n\n' \
            "$COMMAND_USER" "$TOPIC_PREFIX" "$TOPIC_PREFIX"
    } >"$tmp_acl"
    for user in $BRIDGE_USERS $COMMAND_USER; do
        mosquitto_passwd -b "$tmp_pw" "$user" "$TELEMETER_MQTT__PASSWORD" 2>/dev/null ||
            die "mosquitto_passwd failed for $user"
    done
    (
        flock -w 30 7 || die "auth dir $AUTH_DIR is locked"
        mv "$tmp_pw" "$AUTH_DIR/service.passwd"
        mv "$tmp_acl" "$AUTH_DIR/service.acl"
        touch "$AUTH_DIR/devices.passwd" "$AUTH_DIR/devices.acl"
        for f in passwd acl; do
            { cat "$AUTH_DIR/service.$f"; echo; cat "$AUTH_DIR/devices.$f"; } >"$AUTH_DIR/.$f.tmp"
            chmod 600 "$AUTH_DIR/.$f.tmp"
            mv "$AUTH_DIR/.$f.tmp" "$AUTH_DIR/$f"
        done
    ) 7>>"$AUTH_DIR/.lock"
}

auth_mosquitto() {
    local pid
    write_broker_auth
    if pid=$(mosq_pid); then
        kill -HUP "$pid"
        log "mosquitto: service users rewritten, broker reloaded (pid $pid)"
    else
        log "mosquitto: service users written to $AUTH_DIR"
    fi
}

start_mosquitto() {
    local pid i out
    if pid=$(mosq_pid); then
        log "mosquitto: already running (pid $pid) on $HOST:$MQTT_PORT, reusing"
        return 0
    fi
    if port_open "$MQTT_PORT"; then
        log "mosquitto: $HOST:$MQTT_PORT already in use by a broker not started here, reusing it (its config may differ from deploy/mosquitto/mosquitto.conf)"
        return 0
    fi
    command -v mosquitto >/dev/null 2>&1 || die "mosquitto not installed (run: deploy/services.sh up as root)"
    write_broker_auth
    render_mosquitto_conf
    rm -f "$MOSQ_PID"
    # -d: daemonize; mosquitto writes its own pid file (pid_file in the config).
    if ! out=$(mosquitto -c "$MOSQ_CONF" -d 8>&- 9>&- 2>&1); then
        printf '%s\n' "$out" >&2
        [[ -f $MOSQ_LOG ]] && tail -n 20 "$MOSQ_LOG" >&2
        die "mosquitto: failed to start"
    fi
    for ((i = 0; i < WAIT_TIMEOUT * 5; i++)); do
        if pid=$(mosq_pid) && port_open "$MQTT_PORT"; then
            log "mosquitto: started (pid $pid) on $HOST:$MQTT_PORT (passwords), $HOST:$MQTT_TLS_PORT (mutual TLS) and $HOST:$MQTT_TLS_PW_PORT (TLS + password), log $MOSQ_LOG"
            return 0
        fi
        if ((i > 10)) && ! mosq_pid >/dev/null; then
            break   # daemon exited (bad config, port race, ...)
        fi
        sleep 0.2
    done
    [[ -f $MOSQ_LOG ]] && tail -n 20 "$MOSQ_LOG" >&2
    die "mosquitto: not accepting connections on $HOST:$MQTT_PORT"
}

stop_mosquitto() {
    local pid
    if pid=$(mosq_pid); then
        stop_pid "$pid" mosquitto
        wait_port_closed "$MQTT_PORT" mosquitto
    else
        log "mosquitto: not running (nothing started here)"
    fi
    rm -f "$MOSQ_PID"
}

# --------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------
kafka_pid() { our_pid "$KAFKA_PID" "kafka.Kafka $KAFKA_PROPS"; }

kafka_cp() { printf '%s/*' "$KAFKA_LIBS"; }

kafka_user() { local v="TELEMETER_KAFKA__$1__USERNAME"; printf '%s' "${!v}"; }
kafka_password() { local v="TELEMETER_KAFKA__$1__PASSWORD"; printf '%s' "${!v}"; }

kafka_answers() {  # 0 if the broker serves a metadata request to the admin user
    if command -v kcat >/dev/null 2>&1; then
        timeout 10 kcat -b "$HOST:$KAFKA_PORT" -X security.protocol=SASL_PLAINTEXT \
            -X sasl.mechanisms=PLAIN -X "sasl.username=$(kafka_user ADMIN)" \
            -X "sasl.password=$(kafka_password ADMIN)" -L -m 5 >/dev/null 2>&1
    else
        port_open "$KAFKA_PORT"
    fi
}

# The SASL users as a fingerprint: the data dir is formatted again when they change.
kafka_users_digest() {
    local role
    for role in "${KAFKA_ROLES[@]}"; do printf '%s:%s\n' "$(kafka_user "$role")" "$(kafka_password "$role")"; done |
        sha256sum | cut -d' ' -f1
}

jaas_escape() { printf '%s' "$1" | sed -e 's/[\\"]/\\&/g'; }

render_kafka_props() {
    local role plain="" secret_file=${CONTROLLER_SECRET:-$KAFKA_DIR/controller.secret}
    [[ -s $secret_file ]] || { (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$secret_file"); }
    for role in "${KAFKA_ROLES[@]}"; do
        plain+="user_$(kafka_user "$role")=\"$(jaas_escape "$(kafka_password "$role")")\" "
    done
    (umask 077
     sed -e "s|@PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$(sed_escape "$KAFKA_DATA")|g" \
        -e "s|@ADMIN_USER@|$(sed_escape "$(kafka_user ADMIN)")|g" \
        -e "s|@ADMIN_PASSWORD@|$(sed_escape "$(jaas_escape "$(kafka_password ADMIN)")")|g" \
        -e "s|@PLAIN_USERS@|$(sed_escape "${plain% }")|g" \
        -e "s|@CONTROLLER_PASSWORD@|$(sed_escape "$(cat "$secret_file")")|g" \
        "$SCRIPT_DIR/kafka/server.properties.template" >"$KAFKA_PROPS.tmp")
    # A node of the 3-node cluster: the later keys win (java.util.Properties).
    [[ -n ${CLUSTER_NODE:-} ]] && cluster_overrides >>"$KAFKA_PROPS.tmp"
    mv "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
}

format_kafka_storage() {
    # Format once per set of users. A restart (e.g. after kill-kafka) keeps the data dir.
    local marker=$KAFKA_DATA/.telemeter-sasl-users digest role uuid args=()
    digest=$(kafka_users_digest)
    if [[ -f $KAFKA_DATA/meta.properties ]]; then
        [[ -f $marker && $(cat "$marker") == "$digest" ]] && return 0
        log "kafka: its SASL users changed (or it predates them): formatting the dev data dir again, topics are lost"
        rm -rf "${KAFKA_DATA:?}"/* "${KAFKA_DATA:?}"/.[!.]*
    fi
    if [[ -n ${CLUSTER_ID_FILE:-} && -s $CLUSTER_ID_FILE ]]; then
        uuid=$(cat "$CLUSTER_ID_FILE")
    else
        uuid=$(java -cp "$(kafka_cp)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        [[ -n $uuid ]] || die "kafka: StorageTool random-uuid failed"
        [[ -n ${CLUSTER_ID_FILE:-} ]] && printf '%s\n' "$uuid" >"$CLUSTER_ID_FILE"
    fi
    for role in "${KAFKA_ROLES[@]}"; do
        args+=(--add-scram "SCRAM-SHA-512=[name=\"$(kafka_user "$role")\",password=\"$(kafka_password "$role")\"]")
    done
    # No --standalone: the quorum is static (controller.quorum.voters). The output lists
    # the SCRAM records (salted keys): kept out of the logs.
    java -cp "$(kafka_cp)" -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.yaml" \
        kafka.tools.StorageTool format -t "$uuid" -c "$KAFKA_PROPS" "${args[@]}" \
        >"$KAFKA_DIR/format.out" 2>&1 || {
        grep -v 'ScramCredential\|storedKey' "$KAFKA_DIR/format.out" >&2
        rm -f "$KAFKA_DIR/format.out"
        die "kafka: storage format failed"
    }
    rm -f "$KAFKA_DIR/format.out"
    printf '%s\n' "$digest" >"$marker"
    log "kafka: formatted $KAFKA_DATA (cluster id $uuid, SASL users: $(for r in "${KAFKA_ROLES[@]}"; do printf '%s ' "$(kafka_user "$r")"; done))"
}

start_kafka() {
    local pid i
    if pid=$(kafka_pid); then
        if kafka_answers; then
            log "kafka: already running (pid $pid) on $HOST:$KAFKA_PORT, reusing"
            return 0
        fi
        # Ours but not answering yet (e.g. an `up` interrupted mid-start): just wait.
        wait_kafka "$pid" "already starting"
        return 0
    fi
    if port_open "$KAFKA_PORT"; then
        log "kafka: $HOST:$KAFKA_PORT already in use by a broker not started here, reusing it"
        return 0
    fi
    if port_open "$KAFKA_CONTROLLER_PORT"; then
        die "kafka: controller port $HOST:$KAFKA_CONTROLLER_PORT is in use (set TELEMETER_KAFKA_CONTROLLER_PORT)"
    fi
    ensure_java
    fetch_kafka
    render_kafka_props
    format_kafka_storage
    spawn_kafka 1g
    wait_kafka "$(cat "$KAFKA_PID")" started
}

spawn_kafka() {  # heap -> start the broker of the current KAFKA_* variables, do not wait
    rm -f "$KAFKA_PID"
    # setsid: own session, so a Ctrl-C / process-group kill aimed at the caller
    # does not take the broker down with it. nohup: survive the terminal closing.
    # (Not a process-group leader here, so setsid execs java in place and $! is java.)
    nohup setsid java -Xms256m "-Xmx$1" -XX:+UseG1GC -cp "$(kafka_cp)" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.yaml" \
        kafka.Kafka "$KAFKA_PROPS" >>"$KAFKA_OUT" 2>&1 </dev/null 8>&- 9>&- &
    echo "$!" >"$KAFKA_PID"
}

# --------------------------------------------------------------------------
# A 3-node Kafka (KRaft, static quorum; ../shared/recipes/kafka-cluster.md): every node a
# broker and a controller, the same SASL users and ACL authorizer as the single node, on
# 127.0.0.1:BASE, BASE+2, BASE+4 (controllers one above each; BASE from
# TELEMETER_KAFKA_CLUSTER_PORT, 19092), state in .run/kafka-cluster/n1..n3. Topics of
# replication factor 3 keep every acknowledged record (acks=all, min.insync.replicas 2)
# while one node is down. About 350 MiB per node.
# --------------------------------------------------------------------------
CLUSTER_NODES=(1 2 3)
CLUSTER_PORT=${TELEMETER_KAFKA_CLUSTER_PORT:-19092}

cluster_node() {  # n -> the KAFKA_* paths and ports are node n's
    local n=$1
    [[ $n =~ ^[123]$ ]] || die "kafka-cluster: no node '$n' (1, 2 or 3)"
    CLUSTER_NODE=$n
    CLUSTER_DIR=$RUN_DIR/kafka-cluster
    CONTROLLER_SECRET=$CLUSTER_DIR/controller.secret
    CLUSTER_ID_FILE=$CLUSTER_DIR/cluster.id
    KAFKA_DIR=$CLUSTER_DIR/n$n
    KAFKA_DATA=$KAFKA_DIR/data
    KAFKA_PROPS=$KAFKA_DIR/server.properties
    KAFKA_PID=$KAFKA_DIR/kafka.pid
    KAFKA_OUT=$KAFKA_DIR/kafka.out
    KAFKA_PORT=$((CLUSTER_PORT + 2 * (n - 1)))
    KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 1))
    mkdir -p "$KAFKA_DATA"
}

cluster_overrides() {
    local n voters=""
    for n in "${CLUSTER_NODES[@]}"; do
        voters+="$n@$HOST:$((CLUSTER_PORT + 2 * (n - 1) + 1)),"
    done
    cat <<PROPS

# kafka-cluster node $CLUSTER_NODE (deploy/services.sh)
node.id=$CLUSTER_NODE
controller.quorum.voters=${voters%,}
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
PROPS
}

cluster_bootstrap() {
    local n out=""
    for n in "${CLUSTER_NODES[@]}"; do out+="$HOST:$((CLUSTER_PORT + 2 * (n - 1))),"; done
    printf '%s' "${out%,}"
}

cluster_spawn() {  # n -> start node n unless it runs (no wait: a node answers once 2 do)
    cluster_node "$1"
    if kafka_pid >/dev/null; then return 0; fi
    port_open "$KAFKA_PORT" && die "kafka-cluster: $HOST:$KAFKA_PORT is in use (set TELEMETER_KAFKA_CLUSTER_PORT)"
    render_kafka_props
    format_kafka_storage
    spawn_kafka 512m
}

cluster_up() {
    local n
    ensure_java
    fetch_kafka
    mkdir -p "$RUN_DIR/kafka-cluster"
    for n in "${CLUSTER_NODES[@]}"; do cluster_spawn "$n"; done
    for n in "${CLUSTER_NODES[@]}"; do cluster_node "$n"; wait_kafka "$(cat "$KAFKA_PID")" "node $n up"; done
    log "kafka-cluster: bootstrap $(cluster_bootstrap)"
}

cluster_down() {
    local n pid
    # SIGTERM to every node first: the last one stopped alone cannot finish a controlled
    # shutdown without a quorum and would wait out STOP_TIMEOUT.
    for n in "${CLUSTER_NODES[@]}"; do
        cluster_node "$n"
        if pid=$(kafka_pid); then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for n in "${CLUSTER_NODES[@]}"; do cluster_node "$n"; stop_kafka; done
}

cluster_status() {
    local n pid
    for n in "${CLUSTER_NODES[@]}"; do
        cluster_node "$n"
        if pid=$(kafka_pid); then log "kafka-cluster: node $n running (pid $pid) on $HOST:$KAFKA_PORT"
        else log "kafka-cluster: node $n not running"; fi
    done
}

wait_kafka() {  # pid verb -> poll until the port is open and Kafka answers metadata
    local pid=$1 verb=$2 start=$SECONDS
    while ((SECONDS - start < WAIT_TIMEOUT)); do
        if ! pid_alive "$pid"; then
            tail -n 30 "$KAFKA_OUT" >&2 || true
            rm -f "$KAFKA_PID"
            die "kafka: process $pid exited during startup (see $KAFKA_OUT)"
        fi
        if port_open "$KAFKA_PORT" && kafka_answers; then
            log "kafka: $verb (pid $pid) on $HOST:$KAFKA_PORT, ready after $((SECONDS - start))s, log $KAFKA_OUT"
            return 0
        fi
        sleep 0.5
    done
    tail -n 30 "$KAFKA_OUT" >&2 || true
    die "kafka: not ready after ${WAIT_TIMEOUT}s (pid $pid still running; see $KAFKA_OUT)"
}

stop_kafka() {
    local pid
    if pid=$(kafka_pid); then
        stop_pid "$pid" kafka
        wait_port_closed "$KAFKA_PORT" kafka
    else
        log "kafka: not running (nothing started here)"
    fi
    rm -f "$KAFKA_PID"
}

wait_port_closed() {  # port name -> wait (up to 10 s) until nothing accepts on the port
    local i
    for ((i = 0; i < 100; i++)); do
        port_open "$1" || return 0
        sleep 0.1
    done
    die "$2: port $HOST:$1 still accepts connections after the process died"
}

kill9() {  # name pid-function pidfile port -> SIGKILL our process, wait until it is gone
    local name=$1 pidfn=$2 pidfile=$3 port=$4 pid i
    if ! pid=$("$pidfn"); then
        log "$name: not running (nothing started here), nothing to kill"
        rm -f "$pidfile"
        return 0
    fi
    kill -KILL "$pid"
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || break
        sleep 0.2
    done
    pid_alive "$pid" && die "$name: pid $pid survived SIGKILL"
    # The listening socket can outlive the pid for a moment; a start that still saw the
    # port open would "reuse" a broker that is gone.
    wait_port_closed "$port" "$name"
    rm -f "$pidfile"
    log "$name: killed with SIGKILL (pid $pid); its data is kept"
}

kill_mosquitto() { kill9 mosquitto mosq_pid "$MOSQ_PID" "$MQTT_PORT"; }
kill_kafka() { kill9 kafka kafka_pid "$KAFKA_PID" "$KAFKA_PORT"; }

# --------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------
status() {
    local pid rc=0
    if pid=$(mosq_pid); then
        if port_open "$MQTT_PORT"; then
            log "mosquitto: running (pid $pid) on $HOST:$MQTT_PORT"
        else
            log "mosquitto: process $pid running but $HOST:$MQTT_PORT not accepting connections"; rc=1
        fi
    elif port_open "$MQTT_PORT"; then
        log "mosquitto: $HOST:$MQTT_PORT open (broker not started here)"
    else
        log "mosquitto: stopped"; rc=1
    fi
    if pid=$(kafka_pid); then
        if kafka_answers; then
            log "kafka: running (pid $pid) on $HOST:$KAFKA_PORT"
        else
            log "kafka: process $pid running but not answering on $HOST:$KAFKA_PORT (starting?)"; rc=1
        fi
    elif kafka_answers; then
        log "kafka: $HOST:$KAFKA_PORT answering (broker not started here)"
    else
        log "kafka: stopped"; rc=1
    fi
    return $rc
}

usage() {
    sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
    exit 2
}

main() {
    [[ $# -eq 1 ]] || usage
    case $1 in
        up|down|status|start-mosquitto|stop-mosquitto|restart-mosquitto|auth-mosquitto|\
        kill-mosquitto|start-kafka|stop-kafka|kill-kafka|fetch-kafka|\
        cluster-up|cluster-down|cluster-status|cluster-bootstrap) ;;
        cluster-kill-[123]|cluster-start-[123]) ;;
        -h|--help|help) usage ;;
        *) usage ;;
    esac
    init_run_dir
    [[ $1 == status || $1 == cluster-status || $1 == cluster-bootstrap ]] || take_lock
    case $1 in
        up)
            ensure_packages
            start_mosquitto
            start_kafka
            ;;
        down)
            stop_kafka
            stop_mosquitto
            if [[ -d $RUN_DIR/kafka-cluster ]]; then cluster_down; fi
            ;;
        status)            status ;;
        start-mosquitto)   start_mosquitto ;;
        stop-mosquitto)    stop_mosquitto ;;
        restart-mosquitto) stop_mosquitto; start_mosquitto ;;
        kill-mosquitto)    kill_mosquitto ;;
        auth-mosquitto)    auth_mosquitto ;;
        start-kafka)       start_kafka ;;
        stop-kafka)        stop_kafka ;;
        kill-kafka)        kill_kafka ;;
        cluster-up)        cluster_up ;;
        cluster-down)      cluster_down ;;
        cluster-status)    cluster_status ;;
        cluster-bootstrap) cluster_bootstrap; echo ;;
        cluster-kill-*)    cluster_node "${1##*-}"; kill_kafka ;;
        cluster-start-*)
            cluster_spawn "${1##*-}"
            wait_kafka "$(cat "$KAFKA_PID")" "node ${1##*-} started"
            ;;
        fetch-kafka)
            if kafka_libs_ok; then
                log "kafka: $(count_jars) jars already cached in $KAFKA_LIBS"
            else
                fetch_kafka
            fi
            ;;
    esac
}

main "$@"
