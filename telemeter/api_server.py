"""The API as a component: its context (store, device credentials, caches, replays) and
the uvicorn server on a socket the composition root bound (``telemeter/components.py``
builds the other components)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import structlog
import uvicorn

from aggregator.devices import DeviceRulesCache
from api.app import create_app
from api.cache import ResponseCache
from api.catalog import CatalogCache
from api.deps import ApiContext, EventReplay
from billing.alerts import AlertEvaluator
from billing.closer import PeriodCloser
from billing.replenishment import Replenisher
from downlink.dispatcher import Broker, CommandDispatcher
from identity.ca import DeviceCa
from identity.mosquitto import MosquittoAuthFiles
from identity.service import DeviceCredentials
from insights.desk import Refresher
from messaging.errors import KafkaUnavailable
from messaging.kafka import KafkaHealth, KafkaPublisher
from storage.store import ClickHouseStore
from telemeter.components import Clock, kafka_auth, utc_now, validator
from telemeter.config import Settings
from telemeter.lifecycle import Component, StartFailed
from webhooks.sender import WebhookSender

log = structlog.get_logger(__name__)


def device_credentials(
    settings: Settings, store: ClickHouseStore, clock: Clock = utc_now
) -> DeviceCredentials:
    """Device credentials kept in step with the broker's files (when ``broker.auth_dir``)."""
    b = settings.broker
    return DeviceCredentials(
        store=store,
        broker=MosquittoAuthFiles(b.auth_dir, b.pid_file) if b.auth_dir is not None else None,
        ca=lambda: DeviceCa.load(b.ca_cert_file, b.ca_key_file),
        clock=clock,
        topic_prefix=settings.mqtt.topic_prefix,
        cert_validity=b.device_cert_validity,
    )


def api_context(
    settings: Settings,
    store: ClickHouseStore,
    clock: Clock = utc_now,
    replay: EventReplay | None = None,
) -> ApiContext:
    """The API's dependencies; says loudly when the dev default token is in use."""
    token, is_default = settings.admin_token()
    if is_default:
        log.warning(
            "dev_mode_default_admin_token",
            hint="the API accepts the dev default admin token (README); set "
            "TELEMETER_API__ADMIN_TOKEN; outside dev (TELEMETER_ENV=prod) a token of 32+ "
            "characters is required",
        )
    a = settings.api
    return ApiContext(
        store=store,
        admin_token=token,
        clock=clock,
        credentials=device_credentials(settings, store, clock),
        kafka_check=KafkaHealth(settings.kafka.bootstrap, kafka_auth(settings, "api")).check,
        validator=validator(settings),
        device_rules=DeviceRulesCache(store, settings.ingest.unknown_devices),
        replay=replay,
        cache=ResponseCache(a.response_cache_mib * 2**20),
        catalog=CatalogCache(a.catalog_cache_entries),
        metrics_token=a.metrics_token,
        max_body_bytes=a.max_body_bytes,
        max_in_flight=a.max_in_flight,
    )


def api_socket(settings: Settings) -> socket.socket:
    """The API's socket, bound (not yet listening): taking the port first makes a second
    ``telemeter up`` fail at once, before it touches the store or Kafka's consumer groups."""
    host, port = settings.api.host, settings.api.port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        # asyncio sets TCP_NODELAY only on listening sockets it creates itself; without it
        # Nagle's algorithm holds small responses back (half the requests/s, measured).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartFailed(
                "api",
                f"{host}:{port} is already in use",
                "is another `telemeter up` (or `telemeter api`) running? Stop it, or set "
                "TELEMETER_API__PORT",
            ) from exc
        raise StartFailed(
            "api", f"cannot listen on {host}:{port}: {exc.strerror}", "check TELEMETER_API__HOST"
        ) from exc
    return sock


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the composition root owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def run_api(
    settings: Settings,
    store: ClickHouseStore,
    clock: Clock = utc_now,
    *,
    sock: socket.socket | None = None,
) -> AsyncIterator[str]:
    """uvicorn serving the API (on ``sock`` when the caller has bound it already); yields
    its base URL once it accepts connections."""
    async with Component("api") as c:
        if sock is None:
            sock = api_socket(settings)
            c.stop_with(sock.close)
        # Replays publish to the events topic. Without Kafka the API still serves everything
        # else and answers replays with 503.
        replays = KafkaPublisher(
            settings.kafka.bootstrap,
            client_id="telemeter-api-replay",
            auth=kafka_auth(settings, "api"),
        )
        c.stop_with(replays.stop)
        replay: EventReplay | None = None
        try:
            await replays.start()
            replay = functools.partial(replays.publish, settings.kafka.events_topic)
        except KafkaUnavailable as exc:
            log.warning("api_replay_unavailable", error=str(exc))
        context = api_context(settings, store, clock, replay)
        # The broker's files follow the store: written now (a restart repairs a missed sync)
        # and daily (the CRL must never expire).
        assert context.credentials is not None
        await c.spawn("broker-sync", context.credentials.run_periodic_sync)
        if settings.billing.close_worker:
            closer = PeriodCloser(
                store,
                clock,
                interval_s=settings.billing.close_interval.total_seconds(),
                restate_horizon=settings.billing.restate_horizon,
            )
            await c.spawn("period-closer", closer.run)
        if settings.billing.alerts_worker:
            replenisher = Replenisher(store)
            evaluator = AlertEvaluator(
                store,
                clock,
                interval_s=settings.billing.alerts_interval.total_seconds(),
                replenisher=replenisher,
            )
            await c.spawn("alert-evaluator", evaluator.run)
            await c.spawn("replenisher", functools.partial(replenisher.run, clock))
        if settings.billing.insights_worker:
            refresher = Refresher(
                store, clock, interval_s=settings.billing.insights_interval.total_seconds()
            )
            await c.spawn("insights-refresher", refresher.run)
        if settings.downlink.dispatcher:
            m = settings.mqtt
            password = m.password.get_secret_value() if m.password is not None else None
            broker = Broker(
                host=m.host,
                port=m.tls_password_port if m.tls else m.port,
                username=settings.downlink.username,
                password=password,
                ca_file=m.ca_file if m.tls else None,
                topic_prefix=m.topic_prefix,
            )
            dispatcher = CommandDispatcher(
                store, broker, clock, interval_s=settings.downlink.interval.total_seconds()
            )
            await c.spawn("command-dispatcher", dispatcher.run)
        if settings.webhooks.sender:
            outbound = httpx.AsyncClient()
            c.stop_with(outbound.aclose)
            sender = WebhookSender(
                store,
                outbound,
                clock,
                interval_s=settings.webhooks.interval.total_seconds(),
                timeout_s=settings.webhooks.timeout.total_seconds(),
                schedule=settings.webhooks.retry_schedule,
            )
            await c.spawn("webhook-sender", sender.run)
        config = uvicorn.Config(
            create_app(context), log_config=None, access_log=False, lifespan="off"
        )
        server = _EmbeddedServer(config)

        def stop() -> None:
            server.should_exit = True

        api = await c.spawn("api", lambda: server.serve(sockets=[sock]), stop=stop)
        while not server.started:
            if api.done():
                await api  # raises why uvicorn stopped
            await asyncio.sleep(0.02)
        host, port = sock.getsockname()[:2]
        url = f"http://{host}:{port}"
        c.running(url=url, docs=f"{url}/docs", console=f"{url}/console/")
        yield url
