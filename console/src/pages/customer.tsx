// One customer, for staff: health with its points per factor, usage, the bill so far and
// its projection, devices, quotes, statements, alerts, orders and commands. Each section
// reads the public API with the signed-in token; what it may not read says so.
import { useCallback, useEffect, useState } from "preact/hooks";
import { get, type Insights, type InvoicePreview, type Me } from "../api";
import { decimal, percent } from "../format";
import { when } from "../time";
import { allowed, Band, NotAllowed, Problem, Section, useLoad } from "../ui";
import { Alerts, Commands, Orders, Quotes, Statements } from "./lists";
import { Bill, DeviceBreakdown, UsageCharts } from "./usage";

const FACTOR_TEXT: Record<string, string> = {
  usage_trend: "usage trend (12 weeks)",
  adoption: "devices active (adoption)",
  silent_devices: "devices not silent",
  included_utilisation: "use of the included quantity",
  commitment_use: "spend against the commitment",
};

/** The page's sections report in; the page is ready (``data-ready``) when all have, and
 * ``window.telemeterReady`` keeps when (ms since navigation started): what the bench reads. */
export function useReadiness(names: string[]): [boolean, (name: string) => void] {
  const [done, setDone] = useState<Set<string>>(new Set());
  const mark = useCallback((name: string) => {
    setDone((d) => (d.has(name) ? d : new Set([...d, name])));
  }, []);
  const ready = names.every((n) => done.has(n));
  if (ready && !window.telemeterReady) {
    window.telemeterReady = { page: location.hash, ms: performance.now() };
  }
  return [ready, mark];
}

declare global {
  interface Window {
    telemeterReady?: { page: string; ms: number };
  }
}

function Health(props: { insights: Insights }) {
  const { health, devices, at } = props.insights;
  const factors = Object.keys(health.weights);
  return (
    <Section title="Health" id="health">
      <div class="kpis">
        <div>
          <span class="muted">score</span>
          <strong data-testid="health-score">{decimal(health.score, 0)}</strong> <Band band={health.band} />
        </div>
        <div>
          <span class="muted">a week ago</span>
          <strong>{decimal(health.week_ago, 0)}</strong> ({health.trend})
        </div>
        <div>
          <span class="muted">devices</span>
          <strong>
            {devices.active} / {devices.assigned}
          </strong>{" "}
          active, {devices.silent} silent
        </div>
      </div>
      <table class="list" data-testid="health-points">
        <thead>
          <tr>
            <th scope="col">Factor</th>
            <th scope="col">Points</th>
            <th scope="col">Of</th>
            <th scope="col" aria-hidden="true"></th>
          </tr>
        </thead>
        <tbody>
          {factors.map((f) => (
            <tr>
              <td>{FACTOR_TEXT[f] ?? f}</td>
              <td class="n">{decimal(health.points[f], 1)}</td>
              <td class="n">{decimal(health.weights[f], 0)}</td>
              <td>
                <span class="minibar" style={{ width: `${(100 * Number(health.points[f])) / Number(health.weights[f] || 1)}%` }} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted small">Computed {when(at)}; every figure's formula: GET /v1/customers/…/insights.</p>
    </Section>
  );
}

function Figures(props: { insights: Insights }) {
  return (
    <Section title="Trends" id="trends">
      <table class="list">
        <thead>
          <tr>
            <th scope="col">Meter</th>
            <th scope="col">Growth 30 d</th>
            <th scope="col">Trend 12 w (%/week)</th>
            <th scope="col">Projected (weekday-weighted)</th>
          </tr>
        </thead>
        <tbody>
          {props.insights.meters.map((m) => (
            <tr>
              <td>{m.meter}</td>
              <td class="n" title={m.figures.growth_30d?.formula}>
                {percent(m.figures.growth_30d?.value as string | null)}
              </td>
              <td class="n" title={m.figures.trend_12w?.formula}>
                {decimal(m.figures.trend_12w?.value as string | null, 2)}
              </td>
              <td class="n" title={m.figures.projected_weekday?.formula}>
                {decimal(m.figures.projected_weekday?.value as string | null, 0)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Section>
  );
}

export function CustomerPage(props: { customerId: string; me: Me }) {
  const { customerId, me } = props;
  const base = `/v1/customers/${encodeURIComponent(customerId)}`;
  const [now] = useState(() => new Date());
  const [device, setDevice] = useState<string | null>(null);
  const head = useLoad(
    () =>
      Promise.all([
        get<InvoicePreview>(`${base}/invoice-preview`),
        allowed(get<Insights>(`${base}/insights`)),
        allowed(get<{ name: string; timezone: string }>(base)),
      ]),
    [customerId],
  );
  const [ready, mark] = useReadiness(["usage", "devices", "quotes", "statements", "alerts", "orders"]);
  const admin = me.role === "admin";
  if (head.error) return <Problem error={head.error} />;
  const [preview, insights, customer] = head.data ?? [null, null, null];
  // One layout whether the head has arrived or not (each child keeps its place), so the
  // lists, which need only the customer's id, load beside the head and are not remounted.
  return (
    <div class="page" data-page="customer" data-customer={customerId} data-ready={ready ? "true" : "false"}>
      <h1>
        {customer?.name ?? customerId} <span class="muted small">{customerId}</span>
      </h1>
      {preview ? (
        <p class="muted">
          {preview.tz} · {preview.currency} · plan{" "}
          {preview.segments.map((s) => `${s.plan_id} v${s.plan_version}`).join(", ")}
          {insights && (
            <>
              {" "}
              · <a href={`#/quote?customer=${encodeURIComponent(customerId)}&plan=${insights.plan_id ?? ""}`}>new quote</a>
            </>
          )}
        </p>
      ) : (
        <p class="loading">Loading {customerId}…</p>
      )}
      {preview && (
        <div class="grid">
          {insights ? (
            <Health insights={insights} />
          ) : (
            <Section title="Health">
              <NotAllowed />
            </Section>
          )}
          <Bill preview={preview} />
        </div>
      )}
      {preview && <UsageCharts customerId={customerId} preview={preview} now={now} onReady={() => mark("usage")} />}
      {insights && <Figures insights={insights} />}
      <div class="grid">
        {preview ? (
          <DeviceBreakdown
            customerId={customerId}
            preview={preview}
            onDevice={admin ? setDevice : undefined}
            onReady={() => mark("devices")}
          />
        ) : (
          <div />
        )}
        <div>
          {device && <Commands deviceId={device} />}
          {admin ? (
            <>
              <Alerts subject={customerId} onReady={() => mark("alerts")} />
              <Orders customerId={customerId} onReady={() => mark("orders")} />
            </>
          ) : (
            <Skip onReady={() => (mark("alerts"), mark("orders"))} />
          )}
        </div>
      </div>
      <div class="grid">
        <Quotes customerId={customerId} canAccept={false} onReady={() => mark("quotes")} />
        <Statements customerId={customerId} onReady={() => mark("statements")} />
      </div>
    </div>
  );
}

/** Sections a sales token may not read (alerts, orders: admin), not asked for at all. */
function Skip(props: { onReady: () => void }) {
  useEffect(() => props.onReady(), []);
  return (
    <Section title="Alerts and orders">
      <NotAllowed />
    </Section>
  );
}
