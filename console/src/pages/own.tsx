// The customer's own view (its API key): its usage, the bill so far and its projection,
// the quotes sent to it (accept or decline), its statements. Nothing else: the key reads
// nothing else.
import { useState } from "preact/hooks";
import { get, type InvoicePreview, type Me } from "../api";
import { Problem, useLoad } from "../ui";
import { useReadiness } from "./customer";
import { Quotes, Statements } from "./lists";
import { Bill, DeviceBreakdown, UsageCharts } from "./usage";

export function OwnView(props: { me: Me }) {
  const customerId = props.me.customer_id ?? "";
  const [now] = useState(() => new Date());
  const preview = useLoad(
    () => get<InvoicePreview>(`/v1/customers/${encodeURIComponent(customerId)}/invoice-preview`),
    [customerId],
  );
  const [ready, mark] = useReadiness(["usage", "devices", "quotes", "statements"]);
  if (preview.error) return <Problem error={preview.error} />;
  if (!preview.data) return <p class="loading">Loading…</p>;
  return (
    <div class="page" data-page="own" data-customer={customerId} data-ready={ready ? "true" : "false"}>
      <h1>Your usage</h1>
      <Quotes customerId={customerId} canAccept={true} onReady={() => mark("quotes")} />
      <Bill preview={preview.data} />
      <UsageCharts customerId={customerId} preview={preview.data} now={now} onReady={() => mark("usage")} />
      <div class="grid">
        <DeviceBreakdown customerId={customerId} preview={preview.data} onReady={() => mark("devices")} />
        <Statements customerId={customerId} onReady={() => mark("statements")} />
      </div>
    </div>
  );
}
