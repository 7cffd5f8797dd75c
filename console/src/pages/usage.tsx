// Usage and the bill, shared by the customer page (staff) and the customer's own view:
// usage over time per meter (hour/day/month in the customer's timezone, the period before
// overlaid), per-device breakdown, rated usage with the projection drawn to period end,
// and where the quantity stands against the plan's allowance and tiers.
import { useMemo, useState } from "preact/hooks";
import { type ChargeLine, get, type InvoicePreview, type Usage } from "../api";
import { Chart, type ChartData } from "../chart";
import { decimal, money, num, percent } from "../format";
import { type Grain, iso, label, ranges, when } from "../time";
import { Problem, Section, useLoad, useReported } from "../ui";

export const BLUE = "#2563eb";
export const GREY = "#94a3b8";
export const ORANGE = "#ea580c";
export const GREEN = "#16a34a";

export function usageOf(customerId: string, meter: string, grain: Grain, from: Date, to: Date, byDevice = false) {
  return get<Usage>(`/v1/customers/${encodeURIComponent(customerId)}/usage`, {
    meter,
    window: grain,
    from: iso(from),
    to: iso(to),
    group_by: byDevice ? "device_id" : undefined,
  });
}

/** Current and previous series on the current range's x: bucket i of the previous range is
 * drawn at bucket i of the current one (day 3 of last period beside day 3 of this one). */
export function overlay(current: Usage, previous: Usage, now: Date): ChartData {
  const x = current.series.map((p) => Date.parse(p.start) / 1000);
  const values = current.series.map((p) => (Date.parse(p.start) > now.getTime() ? null : num(p.value)));
  const before = current.series.map((_, i) =>
    i < previous.series.length ? num(previous.series[i].value) : null,
  );
  return {
    x,
    series: [
      { label: `this period (${current.unit})`, values, color: BLUE, fill: true, bars: true },
      { label: "previous period", values: before, color: GREY, dash: [6, 4] },
    ],
  };
}

/** The cumulative quantity by day through the period, the projection from now to the
 * period's end (the invoice preview's projected quantity), and the allowance and next
 * breakpoint as flat lines. */
export function projection(days: Usage, preview: InvoicePreview, meter: string, now: Date): ChartData {
  const end = Date.parse(preview.period_end) / 1000;
  const x = [...days.series.map((p) => Date.parse(p.start) / 1000), end];
  let sum = 0;
  let lastActual = -1;
  const actual: (number | null)[] = days.series.map((p, i) => {
    if (Date.parse(p.start) > now.getTime()) return null;
    sum += num(p.value);
    lastActual = i;
    return sum;
  });
  actual.push(null);
  const projected = preview.projected?.lines.find((l) => l.meter === meter);
  const line = preview.rating.lines.find((l) => l.meter === meter);
  const ahead: (number | null)[] = x.map(() => null);
  if (projected && lastActual >= 0) {
    ahead[lastActual] = sum;
    ahead[x.length - 1] = num(projected.quantity);
  }
  const series: ChartData["series"] = [
    { label: "so far", values: actual, color: BLUE, fill: true },
    { label: "projected", values: ahead, color: ORANGE, dash: [6, 4], span: true },
  ];
  if (line && num(line.included) > 0) {
    series.push({ label: "included", values: x.map(() => num(line.included)), color: GREEN, dash: [2, 4] });
  }
  const next = line ? nextBreakpoint(line) : null;
  if (next !== null) series.push({ label: "next tier", values: x.map(() => next), color: "#9333ea", dash: [2, 4] });
  return { x, series };
}

/** The quantity at which the next tier starts (the allowance plus the current tier's
 * ``to_unit``), or null when the quantity is in the last tier. */
export function nextBreakpoint(line: ChargeLine): number | null {
  const used = line.tiers.filter((t) => num(t.units) > 0);
  const current = used[used.length - 1] ?? line.tiers[0];
  if (!current || current.to_unit === null) return null;
  return num(line.included) + num(current.to_unit);
}

export function TierPosition(props: { line: ChargeLine; unit?: string }) {
  const { line } = props;
  const next = nextBreakpoint(line);
  const q = num(line.quantity);
  const included = num(line.included);
  const scale = Math.max(q, next ?? 0, included) || 1;
  return (
    <div class="tier" data-testid={`tier-${line.meter}`}>
      <div class="bar" aria-hidden="true">
        <span class="fill" style={{ width: `${(100 * q) / scale}%` }} />
        {included > 0 && <span class="mark included" style={{ left: `${(100 * included) / scale}%` }} />}
        {next !== null && <span class="mark next" style={{ left: `${(100 * next) / scale}%` }} />}
      </div>
      <p>
        {line.meter}: {decimal(line.quantity)} so far
        {included > 0 && <>, {decimal(line.included)} included</>}
        {next !== null ? (
          <>
            ; <strong>{decimal(String(next - q))}</strong> to the next tier (at {decimal(String(next))})
          </>
        ) : (
          <>; in the last tier</>
        )}
      </p>
    </div>
  );
}

function MeterSelect(props: { meters: string[]; meter: string; onChange: (meter: string) => void }) {
  return (
    <label>
      Meter{" "}
      <select value={props.meter} onChange={(e) => props.onChange((e.target as HTMLSelectElement).value)}>
        {props.meters.map((m) => (
          <option value={m}>{m}</option>
        ))}
      </select>
    </label>
  );
}

export function Bill(props: { preview: InvoicePreview }) {
  const p = props.preview;
  const c = p.currency;
  return (
    <Section title="Bill so far" id="bill">
      <p class="muted">
        Period {when(p.period_start, p.tz)} – {when(p.period_end, p.tz)} ({p.tz}), {percent(p.elapsed_fraction)}{" "}
        elapsed; usage up to {when(p.usage_updated_at, p.tz)}
      </p>
      <div class="kpis">
        <div>
          <span class="muted">so far</span>
          <strong data-testid="bill-total">{money(p.rating.total, c)}</strong>
        </div>
        <div>
          <span class="muted">projected at period end</span>
          <strong data-testid="bill-projected">{money(p.projected?.total, c)}</strong>
        </div>
      </div>
      <table class="list" data-testid="bill-lines">
        <thead>
          <tr>
            <th scope="col">Meter</th>
            <th scope="col">Quantity</th>
            <th scope="col">Included</th>
            <th scope="col">Billable</th>
            <th scope="col">Amount</th>
            <th scope="col">Projected</th>
          </tr>
        </thead>
        <tbody>
          {p.rating.lines.map((l) => (
            <tr>
              <td>{l.meter}</td>
              <td class="n">{decimal(l.quantity)}</td>
              <td class="n">{decimal(l.included)}</td>
              <td class="n">{decimal(l.billable)}</td>
              <td class="n">{money(l.amount, c)}</td>
              <td class="n">{money(p.projected?.lines.find((x) => x.meter === l.meter)?.amount, c)}</td>
            </tr>
          ))}
          <tr>
            <td colSpan={4}>Base fee</td>
            <td class="n">{money(p.rating.base_fee, c)}</td>
            <td class="n">{money(p.projected?.base_fee, c)}</td>
          </tr>
          {num(p.rating.minimum_true_up) > 0 && (
            <tr>
              <td colSpan={4}>Minimum commitment true-up</td>
              <td class="n">{money(p.rating.minimum_true_up, c)}</td>
              <td class="n">{money(p.projected?.minimum_true_up, c)}</td>
            </tr>
          )}
        </tbody>
      </table>
      <h3>Tier position</h3>
      {p.rating.lines.map((l) => (
        <TierPosition line={l} />
      ))}
    </Section>
  );
}

export function UsageCharts(props: { customerId: string; preview: InvoicePreview; now: Date; onReady?: () => void }) {
  const { customerId, preview, now } = props;
  const tz = preview.tz;
  const meters = preview.rating.lines.map((l) => l.meter);
  const [meter, setMeter] = useState(meters[0] ?? "");
  const [grain, setGrain] = useState<Grain>("day");
  const periodStart = new Date(preview.period_start);
  const periodEnd = new Date(preview.period_end);
  const loaded = useLoad(async () => {
    const r = ranges(grain, now, tz, periodStart, periodEnd);
    const [current, previous, days] = await Promise.all([
      usageOf(customerId, meter, grain, r.current.from, r.current.to),
      usageOf(customerId, meter, grain, r.previous.from, r.previous.to),
      grain === "day" ? null : usageOf(customerId, meter, "day", periodStart, periodEnd),
    ]);
    return { current, previous, days: days ?? current };
  }, [customerId, meter, grain]);
  const data = useMemo(() => loaded.data && overlay(loaded.data.current, loaded.data.previous, now), [loaded.data]);
  const ahead = useMemo(
    () => loaded.data && projection(loaded.data.days, preview, meter, now),
    [loaded.data, preview],
  );
  useReported(loaded, props.onReady);
  return (
    <Section title="Usage" id="usage">
      <div class="filters">
        <MeterSelect meters={meters} meter={meter} onChange={setMeter} />
        <fieldset class="segmented">
          <legend class="sr">Window</legend>
          {(["hour", "day", "month"] as Grain[]).map((g) => (
            <label>
              <input type="radio" name="grain" value={g} checked={grain === g} onChange={() => setGrain(g)} />
              {g === "hour" ? "Hours (today)" : g === "day" ? "Days (period)" : "Months (12)"}
            </label>
          ))}
        </fieldset>
      </div>
      <Problem error={loaded.error} />
      {data && loaded.data && (
        <>
          <p class="muted" data-testid="usage-total">
            Total {decimal(loaded.data.current.total)} {loaded.data.current.unit} ({tz})
          </p>
          <Chart name="usage" title={`${meter} by ${grain}`} data={data} tz={tz} format={(x) => label(new Date(x * 1000), tz, grain)} />
        </>
      )}
      {ahead && (
        <Chart
          name="projection"
          title={`${meter}: cumulative this period, projected to ${when(preview.period_end, tz)}`}
          data={ahead}
          tz={tz}
          height={200}
          format={(x) => label(new Date(x * 1000), tz, "day")}
        />
      )}
    </Section>
  );
}

export function DeviceBreakdown(props: {
  customerId: string;
  preview: InvoicePreview;
  onDevice?: (deviceId: string) => void;
  onReady?: () => void;
}) {
  const { customerId, preview } = props;
  const meters = preview.rating.lines.map((l) => l.meter);
  const [meter, setMeter] = useState(meters[0] ?? "");
  const usage = useLoad(
    () => usageOf(customerId, meter, "month", new Date(preview.period_start), new Date(preview.period_end), true),
    [customerId, meter],
  );
  const rows = useMemo(() => {
    const by = new Map<string, number>();
    const text = new Map<string, string>();
    for (const p of usage.data?.series ?? []) {
      const d = p.device_id ?? "?";
      // one bucket per device in a monthly period: its exact decimal; more: their sum
      text.set(d, by.has(d) ? String(by.get(d)! + num(p.value)) : p.value);
      by.set(d, (by.get(d) ?? 0) + num(p.value));
    }
    return [...by.entries()].sort((a, b) => b[1] - a[1]).map(([d, v]) => ({ d, v, text: text.get(d)! }));
  }, [usage.data]);
  useReported(usage, props.onReady);
  const top = rows[0]?.v || 1;
  return (
    <Section title={`Devices (${rows.length})`} id="devices">
      <MeterSelect meters={meters} meter={meter} onChange={setMeter} />
      <Problem error={usage.error} />
      <div class="scroll">
        <table class="list" data-testid="device-breakdown">
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">This period</th>
              <th scope="col">Share</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr data-device={r.d}>
                <td>
                  {props.onDevice ? (
                    <button type="button" class="link" onClick={() => props.onDevice!(r.d)}>
                      {r.d}
                    </button>
                  ) : (
                    r.d
                  )}
                </td>
                <td class="n">{decimal(r.text)}</td>
                <td>
                  <span class="minibar" style={{ width: `${(100 * r.v) / top}%` }} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Section>
  );
}
