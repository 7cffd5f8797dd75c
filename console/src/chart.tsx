// Charts with uPlot (time series, canvas): one year of hourly points draws in milliseconds.
// Every chart's data is kept on window.telemeterCharts[name] (and its series in a table
// below it), so a test, or a screen reader, reads the numbers the chart drew.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
  dash?: number[];
  fill?: boolean;
  bars?: boolean;
  span?: boolean; // join points across nulls (a projection's two ends)
}

export interface ChartData {
  x: number[]; // seconds since the epoch
  series: Series[];
}

declare global {
  interface Window {
    telemeterCharts: Record<string, ChartData>;
  }
}
window.telemeterCharts = window.telemeterCharts ?? {};

export function Chart(props: {
  name: string;
  title: string;
  data: ChartData;
  tz: string;
  height?: number;
  format?: (x: number) => string;
}) {
  const holder = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = holder.current;
    if (!el) return;
    const { data } = props;
    const bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined;
    const options: uPlot.Options = {
      width: Math.max(320, el.clientWidth || 640),
      height: props.height ?? 240,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), props.tz),
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
      scales: { x: { time: true } },
      axes: [{ stroke: "#475569" }, { stroke: "#475569", size: 64 }],
      series: [
        {},
        ...data.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          dash: s.dash,
          fill: s.fill ? `${s.color}22` : undefined,
          paths: s.bars ? bars : undefined,
          spanGaps: s.span ?? false,
        })),
      ],
    };
    const plot = new uPlot(options, [data.x, ...data.series.map((s) => s.values)], el);
    window.telemeterCharts[props.name] = data;
    const resize = () => plot.setSize({ width: Math.max(320, el.clientWidth), height: options.height });
    window.addEventListener("resize", resize);
    return () => {
      window.removeEventListener("resize", resize);
      plot.destroy();
    };
  }, [props.data, props.tz]);
  const format = props.format ?? ((x: number) => new Date(x * 1000).toISOString());
  return (
    <figure class="chart" data-chart={props.name}>
      <figcaption>{props.title}</figcaption>
      <div ref={holder} role="img" aria-label={props.title} />
      <details>
        <summary>Data</summary>
        <table class="data">
          <thead>
            <tr>
              <th scope="col">Time</th>
              {props.data.series.map((s) => (
                <th scope="col">{s.label}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {props.data.x.map((x, i) => (
              <tr>
                <td>{format(x)}</td>
                {props.data.series.map((s) => (
                  <td class="n">{s.values[i] === null ? "–" : String(s.values[i])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}
