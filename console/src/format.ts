// Quantities and money arrive as decimal strings and are shown digit for digit (grouped,
// never through a float); charts alone use floats, to draw.

export function decimal(value: string | null | undefined, places?: number): string {
  if (value === null || value === undefined || value === "") return "–";
  let text = value;
  if (places !== undefined) text = round(text, places);
  const negative = text.startsWith("-");
  const [whole, fraction] = (negative ? text.slice(1) : text).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${grouped}${fraction ? `.${fraction}` : ""}`;
}

/** ``value`` rounded half away from zero to ``places`` decimals, on its digits. */
export function round(value: string, places: number): string {
  const negative = value.startsWith("-");
  const [whole, fraction = ""] = (negative ? value.slice(1) : value).split(".");
  if (fraction.length <= places) {
    const padded = places > 0 ? `.${fraction.padEnd(places, "0")}` : "";
    const zero = !/[1-9]/.test(whole + fraction); // "-0" shows as "0.00", not "-0.00"
    return `${negative && !zero ? "-" : ""}${whole}${padded}`;
  }
  let digits = (whole + fraction.slice(0, places)).split("").map(Number);
  if (Number(fraction[places]) >= 5) {
    let i = digits.length - 1;
    while (i >= 0 && digits[i] === 9) digits[i--] = 0;
    if (i < 0) digits = [1, ...digits];
    else digits[i] += 1;
  }
  const all = digits.join("");
  const cut = all.length - places;
  const out = places > 0 ? `${all.slice(0, cut)}.${all.slice(cut)}` : all;
  return `${negative && /[1-9]/.test(out) ? "-" : ""}${out}`;
}

export function money(value: string | null | undefined, currency: string): string {
  return value === null || value === undefined ? "–" : `${currency} ${decimal(value, 2)}`;
}

export function percent(value: string | null | undefined): string {
  if (value === null || value === undefined) return "–";
  return `${decimal(String(Number(value) * 100), 1)}%`;
}

export function num(value: string | null | undefined): number {
  return value === null || value === undefined ? NaN : Number(value);
}
