// Times in the customer's timezone with the browser's own Intl (no timezone library): the
// API buckets usage in the customer's timezone, so the console asks for the same edges.

const formatters = new Map<string, Intl.DateTimeFormat>();

function parts(at: Date, tz: string): Record<string, number> {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(tz, f);
  }
  const out: Record<string, number> = {};
  for (const p of f.formatToParts(at)) if (p.type !== "literal") out[p.type] = Number(p.value);
  return out;
}

/** The wall-clock date and hour of ``at`` in ``tz`` (month 1-12). */
export function local(at: Date, tz: string): { y: number; m: number; d: number; h: number } {
  const p = parts(at, tz);
  return { y: p.year, m: p.month, d: p.day, h: p.hour };
}

/** The instant whose wall clock in ``tz`` reads y-m-d h:00 (months past 12 or below 1 roll
 * over the year). The offset is found by asking Intl twice, so a DST change between the
 * guess and the answer is accounted for. */
export function zoned(y: number, m: number, d: number, h: number, tz: string): Date {
  const wall = Date.UTC(y, m - 1, d, h);
  let guess = wall;
  for (let i = 0; i < 2; i++) {
    const p = parts(new Date(guess), tz);
    const shown = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    guess += wall - shown;
  }
  return new Date(guess);
}

export interface Range {
  from: Date;
  to: Date;
}

export type Grain = "hour" | "day" | "month";

/** The range a usage chart shows at ``grain`` and the one before it, overlaid:
 * hour: today against yesterday; day: the billing period against the one before;
 * month: the last 12 months against the 12 before. */
export function ranges(
  grain: Grain,
  now: Date,
  tz: string,
  periodStart: Date,
  periodEnd: Date,
): { current: Range; previous: Range } {
  const n = local(now, tz);
  if (grain === "hour") {
    const today = zoned(n.y, n.m, n.d, 0, tz);
    return {
      current: { from: today, to: zoned(n.y, n.m, n.d + 1, 0, tz) },
      previous: { from: zoned(n.y, n.m, n.d - 1, 0, tz), to: today },
    };
  }
  if (grain === "day") {
    const s = local(periodStart, tz);
    const e = local(periodEnd, tz);
    const months = (e.y - s.y) * 12 + (e.m - s.m);
    const before =
      months > 0
        ? zoned(s.y, s.m - months, s.d, 0, tz)
        : new Date(periodStart.getTime() - (periodEnd.getTime() - periodStart.getTime()));
    return {
      current: { from: periodStart, to: periodEnd },
      previous: { from: before, to: periodStart },
    };
  }
  const start = zoned(n.y, n.m - 11, 1, 0, tz);
  return {
    current: { from: start, to: zoned(n.y, n.m + 1, 1, 0, tz) },
    previous: { from: zoned(n.y, n.m - 23, 1, 0, tz), to: start },
  };
}

export function iso(at: Date): string {
  return at.toISOString();
}

/** A short local label: a time of day, a day, or a month. */
export function label(at: Date, tz: string, grain: Grain): string {
  const options: Intl.DateTimeFormatOptions =
    grain === "hour"
      ? { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
      : grain === "day"
        ? { month: "short", day: "numeric" }
        : { year: "numeric", month: "short" };
  return new Intl.DateTimeFormat("en-GB", { ...options, timeZone: tz }).format(at);
}

export function when(value: string | null | undefined, tz?: string): string {
  if (!value) return "–";
  return new Intl.DateTimeFormat("en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
    timeZone: tz,
  }).format(new Date(value));
}
