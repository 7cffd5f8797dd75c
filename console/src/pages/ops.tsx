// Ops: the pipeline's health from this process's metrics (GET /v1/ops/pipeline, read every
// 5 s: rates are the difference of two reads), dead letters with replay, devices by when
// they last reported, webhook deliveries with resend.
import { useEffect, useRef, useState } from "preact/hooks";
import {
  type DeadLetter,
  type Delivery,
  type DeviceActivity,
  type Endpoint,
  type Family,
  get,
  type Page,
  post,
} from "../api";
import { when } from "../time";
import { allowed, Problem, Refused, Section, Status, useLoad } from "../ui";

interface Read {
  at: number;
  families: Family[];
}

function total(read: Read | null, family: string, where: (l: Record<string, string>) => boolean = () => true) {
  const f = read?.families.find((x) => x.name === family);
  if (!f) return null;
  const samples = f.samples.filter((s) => !s.name.endsWith("_bucket") && !s.name.endsWith("_sum") && !s.name.endsWith("_count") && where(s.labels));
  return samples.reduce((a, s) => a + s.value, 0);
}

function byLabel(read: Read | null, family: string, labelName: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of read?.families.find((x) => x.name === family)?.samples ?? []) {
    const key = s.labels[labelName];
    if (key !== undefined) out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

/** The q-quantile of a histogram's observations between two reads (upper bucket edge). */
function quantile(before: Read | null, after: Read | null, family: string, q: number): number | null {
  const buckets = (read: Read | null) =>
    (read?.families.find((f) => f.name === family)?.samples ?? [])
      .filter((s) => s.name.endsWith("_bucket"))
      .map((s) => [Number(s.labels.le), s.value] as [number, number]);
  const a = buckets(after);
  const b = new Map(buckets(before));
  const counts = a.map(([le, v]) => [le, v - (b.get(le) ?? 0)] as [number, number]);
  const n = counts[counts.length - 1]?.[1] ?? 0;
  if (n <= 0) return null;
  return counts.find(([, c]) => c >= q * n)?.[0] ?? null;
}

function Pipeline() {
  const [reads, setReads] = useState<[Read | null, Read | null]>([null, null]);
  const [error, setError] = useState<Error | null>(null);
  useEffect(() => {
    let live = true;
    const poll = async () => {
      try {
        const r = await get<{ at: string; families: Family[] }>("/v1/ops/pipeline");
        if (live) setReads(([, last]) => [last, { at: Date.parse(r.at), families: r.families }]);
      } catch (e) {
        if (live) setError(e as Error);
      }
    };
    poll();
    const timer = setInterval(poll, 5000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);
  const [before, now] = reads;
  const rate = (family: string) => {
    const a = total(now, family);
    const b = total(before, family);
    if (a === null || b === null || !before || !now || now.at === before.at) return "–";
    return `${((a - b) / ((now.at - before.at) / 1000)).toFixed(1)}/s`;
  };
  const count = (family: string) => {
    const v = total(now, family);
    return v === null ? "–" : String(v);
  };
  const p99 = quantile(before, now, "telemeter_freshness_seconds", 0.99);
  const rejects = new Map<string, number>();
  for (const f of ["telemeter_bridge_messages_rejected", "telemeter_aggregator_messages_rejected"]) {
    for (const [k, v] of byLabel(now, f, "reason")) rejects.set(k, (rejects.get(k) ?? 0) + v);
  }
  return (
    <Section title="Pipeline" id="pipeline">
      <Problem error={error} />
      <div class="kpis" data-testid="pipeline">
        <div>
          <span class="muted">received (bridge)</span>
          <strong>{rate("telemeter_bridge_messages_received")}</strong>
          <span class="small">{count("telemeter_bridge_messages_received")} total</span>
        </div>
        <div>
          <span class="muted">forwarded to Kafka</span>
          <strong>{rate("telemeter_bridge_messages_forwarded")}</strong>
          <span class="small">{count("telemeter_bridge_messages_forwarded")} total</span>
        </div>
        <div>
          <span class="muted">events aggregated</span>
          <strong>{rate("telemeter_aggregator_events")}</strong>
          <span class="small">{count("telemeter_aggregator_events")} total</span>
        </div>
        <div>
          <span class="muted">consumer lag</span>
          <strong data-testid="lag">{count("telemeter_aggregator_consumer_lag")}</strong>
          <span class="small">records</span>
        </div>
        <div>
          <span class="muted">freshness p99 (5 s)</span>
          <strong>{p99 === null ? "–" : p99 === Infinity ? "> 300 s" : `≤ ${p99} s`}</strong>
          <span class="small">sent_at → stored</span>
        </div>
      </div>
      <h3>Rejected, by reason</h3>
      {rejects.size === 0 ? (
        <p class="muted">None since this process started.</p>
      ) : (
        <table class="list" data-testid="rejects">
          <tbody>
            {[...rejects.entries()].map(([reason, n]) => (
              <tr>
                <td>
                  <code>{reason}</code>
                </td>
                <td class="n">{n}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="muted small">This API process's own metrics (bridge and aggregator too when they run in it).</p>
    </Section>
  );
}

function DeadLetters() {
  const [status, setStatus] = useState("open");
  const letters = useLoad(() => allowed(get<Page<DeadLetter>>("/v1/dead-letters", { status, limit: 50 })), [status]);
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const replay = async (d: DeadLetter) => {
    setError(null);
    try {
      const r = await post<{ readings: number; seq: number }>(`/v1/dead-letters/${encodeURIComponent(d.id)}/replay`);
      setMessage(`Replayed ${d.id}: ${r.readings} readings as seq ${r.seq}.`);
      letters.reload();
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <Section
      title="Dead letters"
      id="dead-letters"
      actions={
        <label>
          Status{" "}
          <select value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
            <option value="open">open</option>
            <option value="replayed">replayed</option>
            <option value="">all</option>
          </select>
        </label>
      }
    >
      {message && <p role="status">{message}</p>}
      <Problem error={letters.error ?? error} />
      <Refused loaded={letters} />
      {letters.data?.items.length === 0 && <p class="muted">No dead letters.</p>}
      <ul class="rows" data-testid="dead-letters">
        {letters.data?.items.map((d) => (
          <li data-letter={d.id}>
            <Status status={d.status} /> <code>{d.reason}</code> {d.device_id ?? d.mqtt_topic} seq {d.seq ?? "–"}{" "}
            <span class="muted">{when(d.rejected_at)}</span>
            <div class="small">{d.detail}</div>
            {d.payload_text && <pre class="payload">{d.payload_text.slice(0, 400)}</pre>}
            {d.status === "open" && (
              <button type="button" onClick={() => replay(d)} data-testid="replay">
                Replay
              </button>
            )}
          </li>
        ))}
      </ul>
    </Section>
  );
}

function Devices() {
  const [silentOnly, setSilentOnly] = useState(false);
  const devices = useLoad(
    () => allowed(get<Page<DeviceActivity>>("/v1/device-activity", { silent: silentOnly ? true : undefined, limit: 200 })),
    [silentOnly],
  );
  return (
    <Section
      title="Devices"
      id="device-activity"
      actions={
        <label>
          <input type="checkbox" checked={silentOnly} onChange={(e) => setSilentOnly((e.target as HTMLInputElement).checked)} /> silent only
        </label>
      }
    >
      <Problem error={devices.error} />
      <Refused loaded={devices} />
      <div class="scroll">
        <table class="list" data-testid="devices">
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">Kind</th>
              <th scope="col">Customer</th>
              <th scope="col">Last seen</th>
              <th scope="col">Reports (14 d)</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {devices.data?.items.map((d) => (
              <tr>
                <td>{d.device_id}</td>
                <td>{d.kind}</td>
                <td>{d.customer_id ? <a href={`#/customers/${encodeURIComponent(d.customer_id)}`}>{d.customer_id}</a> : "–"}</td>
                <td>{when(d.last_seen)}</td>
                <td class="n">{d.reports_14d}</td>
                <td>{d.silent ? <Status status="silent" /> : d.active ? "active" : "inactive"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {devices.data?.has_more && <p class="muted">The first 200 devices.</p>}
    </Section>
  );
}

function Webhooks() {
  const endpoints = useLoad(() => allowed(get<Page<Endpoint>>("/v1/webhook-endpoints")), []);
  const [chosen, setChosen] = useState<string>("");
  const first = useRef(true);
  useEffect(() => {
    if (first.current && endpoints.data?.items.length) {
      first.current = false;
      setChosen(endpoints.data.items[0].endpoint_id);
    }
  }, [endpoints.data]);
  const deliveries = useLoad(
    async () => (chosen ? get<Page<Delivery>>(`/v1/webhook-endpoints/${encodeURIComponent(chosen)}/deliveries`, { limit: 50 }) : null),
    [chosen],
  );
  const [error, setError] = useState<Error | null>(null);
  const resend = async (d: Delivery) => {
    setError(null);
    try {
      await post(`/v1/webhook-endpoints/${encodeURIComponent(d.endpoint_id)}/events/${encodeURIComponent(d.event_id)}/resend`);
      deliveries.reload();
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <Section
      title="Webhook deliveries"
      id="webhooks"
      actions={
        endpoints.data && endpoints.data.items.length > 0 ? (
          <label>
            Endpoint{" "}
            <select value={chosen} onChange={(e) => setChosen((e.target as HTMLSelectElement).value)}>
              {endpoints.data.items.map((e) => (
                <option value={e.endpoint_id}>{e.url}</option>
              ))}
            </select>
          </label>
        ) : null
      }
    >
      <Problem error={endpoints.error ?? deliveries.error ?? error} />
      <Refused loaded={endpoints} />
      {endpoints.data?.items.length === 0 && <p class="muted">No webhook endpoints.</p>}
      <ul class="rows" data-testid="deliveries">
        {deliveries.data?.items.map((d) => (
          <li>
            <Status status={d.status} /> {d.event_type} <code class="small">{d.event_id}</code>, {d.attempts} attempt
            {d.attempts === 1 ? "" : "s"}
            {d.last_status_code !== null && <>, last HTTP {d.last_status_code}</>}{" "}
            <span class="muted">{when(d.updated_at)}</span>{" "}
            <button type="button" class="secondary" onClick={() => resend(d)}>
              Resend
            </button>
          </li>
        ))}
      </ul>
    </Section>
  );
}

export function Ops() {
  return (
    <div class="page" data-page="ops">
      <h1>Operations</h1>
      <Pipeline />
      <DeadLetters />
      <div class="grid">
        <Devices />
        <Webhooks />
      </div>
    </div>
  );
}
