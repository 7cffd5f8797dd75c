// Small pieces every page uses: loading a set of API reads, an error box, a badge.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError } from "./api";

export interface Loaded<T> {
  data: T | null;
  error: Error | null;
  loading: boolean;
  reload: () => void;
}

/** ``load()`` run now and again on ``reload()`` or when ``deps`` change. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | null; error: Error | null; loading: boolean }>({
    data: null,
    error: null,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** ``p``, or null when the API refused the token (403): a section the token may not read. */
export async function allowed<T>(p: Promise<T>): Promise<T | null> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return null;
    throw e;
  }
}

export function Problem(props: { error: Error | null }) {
  if (!props.error) return null;
  const e = props.error;
  return (
    <p class="problem" role="alert">
      {e instanceof ApiError ? `${e.status} ${e.code}: ${e.message}` : String(e.message)}
    </p>
  );
}

export function Section(props: {
  title: string;
  id?: string;
  children: ComponentChildren;
  actions?: ComponentChildren;
}) {
  return (
    <section class="card" id={props.id} aria-labelledby={props.id ? `${props.id}-h` : undefined}>
      <div class="card-head">
        <h2 id={props.id ? `${props.id}-h` : undefined}>{props.title}</h2>
        {props.actions}
      </div>
      {props.children}
    </section>
  );
}

export function NotAllowed() {
  return <p class="muted">This token may not read this.</p>;
}

/** Calls ``onReady`` once ``loaded`` has its answer: data, a refusal or an error (what a
 * page's readiness counts, ``pages/customer.tsx``). */
export function useReported<T>(loaded: Loaded<T>, onReady?: () => void): void {
  useEffect(() => {
    if (!loaded.loading) onReady?.();
  }, [loaded.loading]);
}

/** "This token may not read this" when ``loaded`` came from ``allowed()`` and was refused. */
export function Refused<T>(props: { loaded: Loaded<T | null> }) {
  const { loaded } = props;
  return !loaded.loading && loaded.data === null && !loaded.error ? <NotAllowed /> : null;
}

const BAND_CLASS: Record<string, string> = {
  healthy: "good",
  watch: "warn",
  at_risk: "bad",
};

export function Band(props: { band: string }) {
  return <span class={`badge ${BAND_CLASS[props.band] ?? ""}`}>{props.band.replace("_", " ")}</span>;
}

export function Status(props: { status: string }) {
  const tone =
    { accepted: "good", succeeded: "good", replayed: "good", sent: "warn", pending: "warn" }[
      props.status
    ] ?? (["failed", "declined", "expired", "open", "firing", "disabled"].includes(props.status) ? "bad" : "");
  return <span class={`badge ${tone}`}>{props.status}</span>;
}

export function Reasons(props: { reasons: string[] }) {
  return (
    <span class="reasons">
      {props.reasons.map((r) => (
        <code class="reason" title={REASON_TEXT[r] ?? r}>
          {r}
        </code>
      ))}
    </span>
  );
}

export const REASON_TEXT: Record<string, string> = {
  NEAR_TIER: "close to the next price tier this period",
  OVER_INCLUDED_3_PERIODS: "over the included quantity three periods running",
  DECLINE_30D: "usage fell over the last 30 days",
  DEVICES_SILENT: "devices stopped reporting",
  COMMITMENT_UNDERUSE: "spending below the minimum commitment",
  CONSUMABLE_LOW: "a consumable is low (an open order)",
};
