// What the console shows for the API's decimal strings, checked against an independent
// model: BigInt arithmetic on the scaled integer (the console works on the digits).
import { describe, expect, it } from "vitest";
import { decimal, money, round } from "../src/format";

/** ``value`` rounded half away from zero to ``places``, via BigInt (the reference). */
function reference(value: string, places: number): string {
  const negative = value.startsWith("-");
  const [whole, fraction = ""] = (negative ? value.slice(1) : value).split(".");
  const scale = 10n ** BigInt(fraction.length);
  const n = BigInt(whole + fraction); // value * scale
  const target = 10n ** BigInt(places);
  // n / scale * target, rounded half away from zero
  const numerator = n * target;
  let q = numerator / scale;
  if ((numerator % scale) * 2n >= scale) q += 1n;
  const digits = q.toString().padStart(places + 1, "0");
  const out = places > 0 ? `${digits.slice(0, -places)}.${digits.slice(-places)}` : digits;
  return negative && q !== 0n ? `-${out}` : out;
}

function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

describe("round", () => {
  it("rounds half away from zero, on the digits", () => {
    expect(round("2.345", 2)).toBe("2.35");
    expect(round("-2.345", 2)).toBe("-2.35");
    expect(round("2.344", 2)).toBe("2.34");
    expect(round("9.995", 2)).toBe("10.00");
    expect(round("-0.004", 2)).toBe("0.00");
    expect(round("12", 2)).toBe("12.00");
    expect(round("0.5", 0)).toBe("1");
    // beyond a float's 15-17 significant digits: still exact
    expect(round("12345678901234567890.125", 2)).toBe("12345678901234567890.13");
  });

  it("equals the BigInt model on 20,000 random decimals", () => {
    const next = random(7);
    for (let i = 0; i < 20000; i++) {
      const whole = String(Math.floor(next() * 10 ** Math.floor(next() * 12)));
      const fraction = String(Math.floor(next() * 10 ** 9)).padStart(9, "0").slice(0, Math.floor(next() * 10));
      const value = `${next() < 0.2 ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
      const places = Math.floor(next() * 4);
      expect(round(value, places), value).toBe(reference(value, places));
    }
  });
});

describe("decimal and money", () => {
  it("groups the whole part and keeps every digit of the fraction", () => {
    expect(decimal("1234567.891011")).toBe("1,234,567.891011");
    expect(decimal("-1000")).toBe("-1,000");
    expect(decimal("999")).toBe("999");
    expect(decimal(null)).toBe("–");
  });

  it("shows money with two places", () => {
    expect(money("1582.275", "EUR")).toBe("EUR 1,582.28");
    expect(money("0", "USD")).toBe("USD 0.00");
  });
});
