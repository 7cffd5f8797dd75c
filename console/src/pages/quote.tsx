// A quote from the call list: the suggested plan and basis arrive prefilled in the link;
// the seller adjusts them, drafts (POST /v1/quotes, priced by the API) and sends
// (POST /v1/quotes/{id}/send). Another draft is another quote: a sent one never changes.
import { useState } from "preact/hooks";
import { all, type Plan, post, type Quote } from "../api";
import { decimal, money } from "../format";
import { when } from "../time";
import { Problem, Section, Status, useLoad } from "../ui";

export function QuoteLines(props: { quote: Quote }) {
  const q = props.quote;
  return (
    <table class="list" data-testid="quote-lines">
      <thead>
        <tr>
          <th scope="col">Meter</th>
          <th scope="col">Quantity</th>
          <th scope="col">Included</th>
          <th scope="col">Amount</th>
        </tr>
      </thead>
      <tbody>
        {q.lines.map((l) => (
          <tr>
            <td>{l.meter}</td>
            <td class="n">{decimal(l.quantity)}</td>
            <td class="n">{decimal(l.included)}</td>
            <td class="n">{money(l.amount, q.currency)}</td>
          </tr>
        ))}
        <tr>
          <td colSpan={3}>Base fee</td>
          <td class="n">{money(q.base_fee, q.currency)}</td>
        </tr>
        <tr class="total">
          <td colSpan={3}>Total per period</td>
          <td class="n" data-testid="quote-total">
            {money(q.total, q.currency)}
          </td>
        </tr>
      </tbody>
    </table>
  );
}

export function QuotePage(props: { params: URLSearchParams }) {
  const customer = props.params.get("customer") ?? "";
  const [plan, setPlan] = useState(props.params.get("plan") ?? "");
  const [lastDays, setLastDays] = useState(props.params.get("last_days") ?? "30");
  const [validDays, setValidDays] = useState("30");
  const [quote, setQuote] = useState<Quote | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const plans = useLoad(() => all<Plan>("/v1/plans", (p) => p.plan_id), []);
  const act = async (f: () => Promise<Quote>) => {
    setBusy(true);
    setError(null);
    try {
      setQuote(await f());
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const draft = (e: Event) => {
    e.preventDefault();
    act(() =>
      post<Quote>("/v1/quotes", {
        customer_id: customer,
        plan_id: plan,
        basis: { last_days: Number(lastDays) },
        valid_days: Number(validDays),
      }),
    );
  };
  const send = () => act(() => post<Quote>(`/v1/quotes/${quote!.quote_id}/send`));
  return (
    <div class="page" data-page="quote">
      <h1>
        Quote for <a href={`#/customers/${encodeURIComponent(customer)}`}>{customer}</a>
      </h1>
      <Section title="Terms" id="terms">
        <form class="form" onSubmit={draft}>
          <label for="plan">Plan</label>
          <select id="plan" value={plan} onChange={(e) => setPlan((e.target as HTMLSelectElement).value)}>
            {!plans.data?.some((p) => p.plan_id === plan) && <option value={plan}>{plan}</option>}
            {plans.data?.map((p) => (
              <option value={p.plan_id}>
                {p.plan_id} – {p.spec.name} ({p.spec.currency})
              </option>
            ))}
          </select>
          <label for="last-days">Priced on the usage of the last (days)</label>
          <input
            id="last-days"
            type="number"
            min={1}
            max={366}
            value={lastDays}
            onInput={(e) => setLastDays((e.target as HTMLInputElement).value)}
          />
          <label for="valid-days">Valid for (days)</label>
          <input
            id="valid-days"
            type="number"
            min={1}
            max={365}
            value={validDays}
            onInput={(e) => setValidDays((e.target as HTMLInputElement).value)}
          />
          <button type="submit" disabled={busy}>
            {quote ? "Draft again with these terms" : "Draft quote"}
          </button>
        </form>
      </Section>
      <Problem error={error} />
      {quote && (
        <Section title={`Quote ${quote.quote_id}`} id="quote">
          <p>
            <Status status={quote.status} /> plan {quote.plan_id} v{quote.plan_version}, from{" "}
            {when(quote.start)}, valid until {when(quote.valid_until)}
          </p>
          <QuoteLines quote={quote} />
          {quote.status === "draft" ? (
            <button type="button" onClick={send} disabled={busy} data-testid="send-quote">
              Send to customer
            </button>
          ) : (
            <p role="status">
              Sent {when(quote.sent_at)}: the customer accepts it with their key.{" "}
              <a href={`#/customers/${encodeURIComponent(customer)}`}>Back to {customer}</a>
            </p>
          )}
        </Section>
      )}
    </div>
  );
}
