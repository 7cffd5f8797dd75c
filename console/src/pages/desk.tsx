// The inside-sales desk: today's call list (GET /v1/insights/call-list) with one click to a
// prefilled quote, and every customer's row (GET /v1/insights/customers), sorted and
// filtered by the API, a page at a time, so 1,000 customers or 100,000 cost the same.
import { useState } from "preact/hooks";
import { get, type InsightRow, type Page, post } from "../api";
import { decimal, money, percent } from "../format";
import { when } from "../time";
import { Band, Problem, REASON_TEXT, Reasons, Section, useLoad } from "../ui";

export function quoteLink(row: InsightRow): string | null {
  const q = row.quote_request;
  if (!q) return null;
  const params = new URLSearchParams({ customer: q.customer_id, plan: q.plan_id });
  if (q.basis?.last_days) params.set("last_days", String(q.basis.last_days));
  return `#/quote?${params}`;
}

function CallList() {
  const calls = useLoad(
    () => get<{ computed_at: string | null; items: InsightRow[] }>("/v1/insights/call-list", { limit: 20 }),
    [],
  );
  const [refreshing, setRefreshing] = useState(false);
  const refresh = async () => {
    setRefreshing(true);
    try {
      await post("/v1/insights/refresh");
      calls.reload();
    } finally {
      setRefreshing(false);
    }
  };
  return (
    <Section
      title="Today's calls"
      id="calls"
      actions={
        <button type="button" onClick={refresh} disabled={refreshing}>
          {refreshing ? "Refreshing…" : "Refresh insights"}
        </button>
      }
    >
      <Problem error={calls.error} />
      {calls.data && (
        <>
          <p class="muted">
            Computed {when(calls.data.computed_at)}; highest expected monthly value first.
          </p>
          {calls.data.items.length === 0 ? (
            <p>No customer has a reason to call today.</p>
          ) : (
            <ol class="calls" data-testid="call-list">
              {calls.data.items.map((row) => (
                <li data-customer={row.customer_id}>
                  <div class="call-main">
                    <a href={`#/customers/${encodeURIComponent(row.customer_id)}`}>{row.name}</a>
                    <Band band={row.band} />
                    <Reasons reasons={row.reasons} />
                  </div>
                  <div class="call-why">{row.reasons.map((r) => REASON_TEXT[r] ?? r).join("; ")}</div>
                  <div class="call-figures">
                    <span>value {money(row.value, row.currency)}/month</span>
                    <span>growth {percent(row.growth_30d)}</span>
                    <span>projected {money(row.projected_total, row.currency)}</span>
                    {row.units_to_next_tier !== null && (
                      <span>{decimal(row.units_to_next_tier)} units to the next tier</span>
                    )}
                  </div>
                  {quoteLink(row) && (
                    <a class="button" href={quoteLink(row)!} data-testid="quote-link">
                      Quote {row.suggested_plan}
                    </a>
                  )}
                </li>
              ))}
            </ol>
          )}
        </>
      )}
    </Section>
  );
}

const COLUMNS: [string, string][] = [
  ["customer_id", "Customer"],
  ["health", "Health"],
  ["growth_30d", "Growth 30 d"],
  ["projected_total", "Projected total"],
  ["units_to_next_tier", "To next tier"],
  ["value", "Value / month"],
];

function Customers() {
  const [sort, setSort] = useState("-value");
  const [band, setBand] = useState("");
  const [reason, setReason] = useState("");
  const [cursors, setCursors] = useState<string[]>([]);
  const after = cursors[cursors.length - 1];
  const rows = useLoad(
    () =>
      get<Page<InsightRow>>("/v1/insights/customers", {
        sort,
        band,
        reason,
        limit: 50,
        starting_after: after,
      }),
    [sort, band, reason, after],
  );
  const order = (column: string) => {
    setCursors([]);
    setSort(sort === `-${column}` ? column : `-${column}`);
  };
  const ariaSort = (column: string) =>
    sort === column ? "ascending" : sort === `-${column}` ? "descending" : undefined;
  return (
    <Section title="Customers" id="customers">
      <div class="filters">
        <label>
          Band{" "}
          <select
            value={band}
            onChange={(e) => {
              setCursors([]);
              setBand((e.target as HTMLSelectElement).value);
            }}
          >
            <option value="">any</option>
            <option value="healthy">healthy</option>
            <option value="watch">watch</option>
            <option value="at_risk">at risk</option>
          </select>
        </label>
        <label>
          Reason{" "}
          <select
            value={reason}
            onChange={(e) => {
              setCursors([]);
              setReason((e.target as HTMLSelectElement).value);
            }}
          >
            <option value="">any</option>
            {Object.keys(REASON_TEXT).map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
        </label>
      </div>
      <Problem error={rows.error} />
      <table class="list" data-testid="customers-table" aria-busy={rows.loading}>
        <thead>
          <tr>
            {COLUMNS.map(([column, text]) => (
              <th scope="col" aria-sort={ariaSort(column)}>
                <button type="button" class="sort" onClick={() => order(column)}>
                  {text}
                  {ariaSort(column) === "ascending" ? " ▲" : ariaSort(column) === "descending" ? " ▼" : ""}
                </button>
              </th>
            ))}
            <th scope="col">Reasons</th>
          </tr>
        </thead>
        <tbody>
          {rows.data?.items.map((r) => (
            <tr data-customer={r.customer_id}>
              <td>
                <a href={`#/customers/${encodeURIComponent(r.customer_id)}`}>{r.name}</a>
                <div class="muted small">{r.customer_id}</div>
              </td>
              <td>
                {decimal(r.health, 0)} <Band band={r.band} />
              </td>
              <td class="n">{percent(r.growth_30d)}</td>
              <td class="n">{money(r.projected_total, r.currency)}</td>
              <td class="n">{decimal(r.units_to_next_tier)}</td>
              <td class="n">{money(r.value, r.currency)}</td>
              <td>
                <Reasons reasons={r.reasons} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="pager">
        <button type="button" disabled={cursors.length === 0} onClick={() => setCursors(cursors.slice(0, -1))}>
          Previous
        </button>
        <span class="muted">page {cursors.length + 1}</span>
        <button
          type="button"
          disabled={!rows.data?.has_more}
          onClick={() => {
            const items = rows.data!.items;
            setCursors([...cursors, items[items.length - 1].customer_id]);
          }}
        >
          Next
        </button>
      </div>
    </Section>
  );
}

export function Desk() {
  return (
    <div class="page" data-page="desk">
      <h1>Inside-sales desk</h1>
      <CallList />
      <Customers />
    </div>
  );
}
