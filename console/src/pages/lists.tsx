// A customer's quotes, statements (with restatements), alerts, orders and a device's
// commands: each a list the API pages, shown when the token may read it.
import { useState } from "preact/hooks";
import {
  type AlertStatus,
  all,
  type Command,
  get,
  type Order,
  type Page,
  post,
  type Quote,
  type Restatement,
  type Statement,
} from "../api";
import { money } from "../format";
import { when } from "../time";
import { allowed, Problem, Refused, Section, Status, useLoad, useReported } from "../ui";
import { QuoteLines } from "./quote";

const enc = encodeURIComponent;

export function Quotes(props: { customerId: string; canAccept: boolean; onReady?: () => void }) {
  const quotes = useLoad(
    () => all<Quote>(`/v1/customers/${enc(props.customerId)}/quotes`, (q) => q.quote_id),
    [props.customerId],
  );
  const [error, setError] = useState<Error | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  useReported(quotes, props.onReady);
  const act = async (q: Quote, action: "accept" | "decline") => {
    setError(null);
    try {
      await post(`/v1/quotes/${q.quote_id}/${action}`);
      quotes.reload();
    } catch (e) {
      setError(e as Error);
    }
  };
  const shown = quotes.data?.filter((q) => !props.canAccept || q.status !== "draft") ?? [];
  return (
    <Section title="Quotes" id="quotes">
      <Problem error={quotes.error ?? error} />
      {shown.length === 0 && quotes.data && <p class="muted">No quotes.</p>}
      <ul class="rows" data-testid="quotes">
        {shown.map((q) => (
          <li data-quote={q.quote_id} data-status={q.status}>
            <button type="button" class="link" aria-expanded={open === q.quote_id} onClick={() => setOpen(open === q.quote_id ? null : q.quote_id)}>
              {q.quote_id}
            </button>{" "}
            <Status status={q.status} /> {q.plan_id} v{q.plan_version}, {money(q.total, q.currency)} per period,
            valid until {when(q.valid_until)}
            {props.canAccept && q.status === "sent" && (
              <span class="actions">
                <button type="button" onClick={() => act(q, "accept")} data-testid="accept-quote">
                  Accept
                </button>
                <button type="button" class="secondary" onClick={() => act(q, "decline")}>
                  Decline
                </button>
              </span>
            )}
            {open === q.quote_id && <QuoteLines quote={q} />}
          </li>
        ))}
      </ul>
    </Section>
  );
}

function Restatements(props: { statementId: string; currency: string }) {
  const found = useLoad(
    () => get<Page<Restatement>>(`/v1/statements/${enc(props.statementId)}/restatements`),
    [props.statementId],
  );
  if (found.error) return <Problem error={found.error} />;
  if (!found.data) return <p class="muted">Loading…</p>;
  if (found.data.items.length === 0) return <p class="muted">Never restated.</p>;
  return (
    <ul>
      {found.data.items.map((r) => (
        <li>
          #{r.number} {when(r.created_at)} ({r.reason}): {money(r.previous_total, props.currency)} →{" "}
          {money(r.restated_total, props.currency)}, {money(r.amount, props.currency)} on {r.lands_on}
        </li>
      ))}
    </ul>
  );
}

export function Statements(props: { customerId: string; onReady?: () => void }) {
  const found = useLoad(
    () => get<Page<Statement>>(`/v1/customers/${enc(props.customerId)}/statements`, { limit: 24 }),
    [props.customerId],
  );
  const [open, setOpen] = useState<string | null>(null);
  useReported(found, props.onReady);
  return (
    <Section title="Statements" id="statements">
      <Problem error={found.error} />
      {found.data?.items.length === 0 && <p class="muted">No closed period yet.</p>}
      <ul class="rows" data-testid="statements">
        {found.data?.items.map((s) => (
          <li>
            <button type="button" class="link" aria-expanded={open === s.statement_id} onClick={() => setOpen(open === s.statement_id ? null : s.statement_id)}>
              {s.period}
            </button>{" "}
            {money(s.total, s.currency)}
            {s.adjustments.length > 0 && (
              <span class="badge warn">
                {s.adjustments.length} restatement{s.adjustments.length > 1 ? "s" : ""} ({money(s.adjustments_total, s.currency)})
              </span>
            )}{" "}
            <span class="muted">closed {when(s.closed_at)}</span>
            {open === s.statement_id && <Restatements statementId={s.statement_id} currency={s.currency} />}
          </li>
        ))}
      </ul>
    </Section>
  );
}

export function Alerts(props: { subject: string; onReady?: () => void }) {
  const found = useLoad(() => allowed(get<Page<AlertStatus>>("/v1/alerts", { subject: props.subject })), [props.subject]);
  useReported(found, props.onReady);
  return (
    <Section title="Alerts" id="alerts">
      <Problem error={found.error} />
      <Refused loaded={found} />
      {found.data?.items.length === 0 && <p class="muted">No alert has fired.</p>}
      <ul class="rows">
        {found.data?.items.map((a) => (
          <li>
            <Status status={a.state} /> {a.rule_id} at {a.threshold} (value {a.value}),{" "}
            <span class="muted">{when(a.updated_at)}</span>
          </li>
        ))}
      </ul>
    </Section>
  );
}

export function Orders(props: { customerId: string; onReady?: () => void }) {
  const found = useLoad(
    () => allowed(get<Page<Order>>("/v1/orders", { customer_id: props.customerId, limit: 50 })),
    [props.customerId],
  );
  useReported(found, props.onReady);
  return (
    <Section title="Replenishment orders" id="orders">
      <Problem error={found.error} />
      <Refused loaded={found} />
      {found.data?.items.length === 0 && <p class="muted">No orders.</p>}
      <ul class="rows">
        {found.data?.items.map((o) => (
          <li>
            <Status status={o.status} /> {o.consumable} for {o.device_id}: level {o.level}
            {o.days_left !== null && <>, {o.days_left} days left</>} <span class="muted">{when(o.created_at)}</span>
          </li>
        ))}
      </ul>
    </Section>
  );
}

export function Commands(props: { deviceId: string }) {
  const found = useLoad(
    () => allowed(get<Page<Command>>(`/v1/devices/${enc(props.deviceId)}/commands`, { limit: 20 })),
    [props.deviceId],
  );
  return (
    <Section title={`Commands to ${props.deviceId}`} id="commands">
      <Problem error={found.error} />
      <Refused loaded={found} />
      {found.data?.items.length === 0 && <p class="muted">No commands.</p>}
      <ul class="rows">
        {found.data?.items.map((c) => (
          <li>
            <Status status={c.status} /> {c.name} <span class="muted">{when(c.created_at)}</span> {c.detail}
          </li>
        ))}
      </ul>
    </Section>
  );
}
