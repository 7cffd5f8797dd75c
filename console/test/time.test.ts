// The console asks for usage at the customer's local edges: checked across DST changes.
import { describe, expect, it } from "vitest";
import { local, ranges, zoned } from "../src/time";

describe("zoned", () => {
  it("finds the instant of a wall-clock hour, around DST", () => {
    // Amsterdam: CET (+1) until 2026-03-29 02:00, then CEST (+2)
    expect(zoned(2026, 3, 29, 0, "Europe/Amsterdam").toISOString()).toBe("2026-03-28T23:00:00.000Z");
    expect(zoned(2026, 3, 30, 0, "Europe/Amsterdam").toISOString()).toBe("2026-03-29T22:00:00.000Z");
    expect(zoned(2026, 11, 1, 0, "America/New_York").toISOString()).toBe("2026-11-01T04:00:00.000Z");
    expect(zoned(2026, 11, 2, 0, "America/New_York").toISOString()).toBe("2026-11-02T05:00:00.000Z");
    expect(zoned(2026, 12, 1, 0, "Asia/Kolkata").toISOString()).toBe("2026-11-30T18:30:00.000Z");
  });

  it("rolls months and days over", () => {
    expect(zoned(2026, 13, 1, 0, "UTC").toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(zoned(2026, 0, 1, 0, "UTC").toISOString()).toBe("2025-12-01T00:00:00.000Z");
    expect(zoned(2026, 3, 32, 0, "UTC").toISOString()).toBe("2026-04-01T00:00:00.000Z");
  });

  it("is the inverse of local at every midnight of a year, in several zones", () => {
    for (const tz of ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "UTC"]) {
      for (let d = 1; d <= 366; d++) {
        const at = zoned(2026, 1, d, 0, tz);
        const back = local(at, tz);
        expect([back.h, back.d], `${tz} day ${d}`).toEqual([0, new Date(Date.UTC(2026, 0, d)).getUTCDate()]);
      }
    }
  });
});

describe("ranges", () => {
  it("day: the billing period and the month before, at local midnights", () => {
    const tz = "Europe/Amsterdam";
    const start = zoned(2026, 11, 1, 0, tz);
    const end = zoned(2026, 12, 1, 0, tz);
    const r = ranges("day", new Date("2026-11-15T12:00:00Z"), tz, start, end);
    expect(r.current).toEqual({ from: start, to: end });
    // October has the DST change: its start is +2, November's +1
    expect(r.previous.from.toISOString()).toBe("2026-09-30T22:00:00.000Z");
    expect(r.previous.to).toEqual(start);
  });

  it("hour: today against yesterday; month: 12 months against the 12 before", () => {
    const now = new Date("2026-12-07T10:00:00Z");
    const h = ranges("hour", now, "UTC", now, now);
    expect(h.current.from.toISOString()).toBe("2026-12-07T00:00:00.000Z");
    expect(h.previous.from.toISOString()).toBe("2026-12-06T00:00:00.000Z");
    const m = ranges("month", now, "UTC", now, now);
    expect(m.current.from.toISOString()).toBe("2026-01-01T00:00:00.000Z");
    expect(m.current.to.toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(m.previous.from.toISOString()).toBe("2025-01-01T00:00:00.000Z");
  });
});
