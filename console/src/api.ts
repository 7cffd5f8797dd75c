// The console's only way to the server: the public API, with the signed-in token. What a
// token may not read the API refuses (403), and the console shows that refusal, never data
// from anywhere else.

const TOKEN_KEY = "telemeter.token";

export type Role = "admin" | "sales" | "provisioner";

export interface Me {
  kind: "admin" | "staff" | "customer";
  name: string;
  role: Role | null;
  customer_id: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, value);
}

type Query = Record<string, string | number | boolean | null | undefined>;

function url(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== null && v !== undefined && v !== "") params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

async function request<T>(method: string, path: string, query?: Query, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    // A retried click must not order twice: every POST carries its own key.
    headers["Idempotency-Key"] = crypto.randomUUID();
  }
  const response = await fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let code = "error";
    let message = `${response.status} ${response.statusText}`;
    try {
      const problem = (await response.json()).error;
      code = problem.code;
      message = problem.message;
    } catch {
      // not the API's error body (a proxy's page): keep the status line
    }
    throw new ApiError(response.status, code, message);
  }
  return (await response.json()) as T;
}

export const get = <T>(path: string, query?: Query) => request<T>("GET", path, query);
export const post = <T>(path: string, body: unknown = {}, query?: Query) =>
  request<T>("POST", path, query, body);

export interface Page<T> {
  items: T[];
  count: number;
  has_more: boolean;
}

/** Every page of a cursor list (``starting_after`` the last id), up to ``max`` items. */
export async function all<T>(
  path: string,
  idOf: (item: T) => string,
  query: Query = {},
  max = 5000,
): Promise<T[]> {
  const found: T[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await get<Page<T>>(path, { ...query, limit: 1000, starting_after: after });
    found.push(...page.items);
    if (!page.has_more || found.length >= max || page.items.length === 0) return found;
    after = idOf(page.items[page.items.length - 1]);
  }
}

// The shapes the console reads (a subset of each schema in /openapi.json).

export interface InsightRow {
  customer_id: string;
  name: string;
  currency: string;
  plan_id: string | null;
  reasons: string[];
  value: string;
  upsell: string;
  at_risk: string;
  growth_30d: string | null;
  trend_12w: string | null;
  health: string;
  band: string;
  health_trend: string;
  projected_total: string | null;
  units_to_next_tier: string | null;
  suggested_plan: string | null;
  quote_request: { customer_id: string; plan_id: string; basis: { last_days?: number } } | null;
  computed_at: string;
}

export interface Figure {
  value: string | boolean | null;
  formula_id: string;
  formula: string;
  inputs: Record<string, unknown>;
}

export interface Insights {
  customer_id: string;
  tz: string;
  currency: string;
  at: string;
  plan_id: string | null;
  period_start: string | null;
  period_end: string | null;
  meters: { meter: string; figures: Record<string, Figure> }[];
  money: Record<string, Figure>;
  devices: { assigned: number; active: number; silent: number; silent_devices: string[] };
  health: {
    score: string;
    band: string;
    trend: string;
    week_ago: string | null;
    points: Record<string, string>;
    weights: Record<string, string>;
  };
}

export interface TierLine {
  from_unit: string;
  to_unit: string | null;
  units: string;
  unit_price: string;
  amount: string;
}

export interface ChargeLine {
  meter: string;
  model: string;
  quantity: string;
  included: string;
  billable: string;
  tiers: TierLine[];
  amount: string;
}

export interface Rating {
  currency: string;
  lines: ChargeLine[];
  base_fee: string;
  usage_total: string;
  minimum_true_up: string;
  subtotal: string;
  total: string;
}

export interface InvoicePreview {
  customer_id: string;
  currency: string;
  period_start: string;
  period_end: string;
  period_start_local: string;
  period_end_local: string;
  tz: string;
  segments: { plan_id: string; plan_version: number }[];
  rating: Rating;
  usage_updated_at: string | null;
  elapsed_fraction: string;
  projected: Rating | null;
}

export interface UsagePoint {
  start: string;
  end: string;
  value: string;
  readings: number;
  device_id: string | null;
}

export interface Usage {
  meter: string;
  unit: string;
  from: string;
  to: string;
  tz: string;
  total: string;
  series: UsagePoint[];
}

export interface Quote {
  quote_id: string;
  status: "draft" | "sent" | "accepted" | "declined" | "expired";
  customer_id: string | null;
  plan_id: string;
  plan_version: number;
  currency: string;
  lines: ChargeLine[];
  base_fee: string;
  total: string;
  quantities: Record<string, string>;
  basis: { last_days: number } | null;
  start: string;
  valid_until: string;
  created_at: string;
  sent_at: string | null;
  accepted_at: string | null;
}

export interface Statement {
  statement_id: string;
  period: string;
  period_start: string;
  period_end: string;
  currency: string;
  closed_at: string;
  rating: Rating;
  adjustments: { restatement_id: string; amount: string; reason: string }[];
  adjustments_total: string;
  total: string;
}

export interface Restatement {
  restatement_id: string;
  number: number;
  reason: string;
  previous_total: string;
  restated_total: string;
  amount: string;
  lands_on: string;
  created_at: string;
}

export interface DeadLetter {
  id: string;
  reason: string;
  detail: string;
  stage: string;
  mqtt_topic: string;
  device_id: string | null;
  seq: number | null;
  payload_text: string | null;
  rejected_at: string;
  status: "open" | "replayed";
  replayed_at: string | null;
}

export interface Delivery {
  endpoint_id: string;
  event_id: string;
  event_type: string;
  status: string;
  attempts: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string;
  updated_at: string | null;
}

export interface Endpoint {
  endpoint_id: string;
  url: string;
  status: string;
  event_types: string[];
}

export interface DeviceActivity {
  device_id: string;
  kind: string;
  customer_id: string | null;
  last_seen: string | null;
  reports_14d: number;
  active: boolean;
  silent: boolean;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

export interface AlertStatus {
  alert_id: string;
  rule_id: string;
  subject: string;
  threshold: string;
  state: string;
  value: string;
  updated_at: string;
}

export interface Order {
  order_id: string;
  device_id: string;
  consumable: string;
  status: string;
  reason: string;
  level: string;
  days_left: string | null;
  created_at: string | null;
}

export interface Command {
  command_id: string;
  device_id: string;
  name: string;
  status: string;
  created_at: string | null;
  finished_at: string | null;
  detail: string;
}

export interface Plan {
  plan_id: string;
  version: number;
  spec: { name: string; currency: string };
}
