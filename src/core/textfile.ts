import { Gauge, Registry } from 'prom-client';

/** One gauge family: its name, help text and value per row (null/undefined: no sample for that row). */
export type GaugeFamily<T> = readonly [
  name: string,
  help: string,
  value: (row: T) => number | null | undefined,
];

/**
 * node_exporter textfile text (Prometheus exposition format, rendered by prom-client) of gauge families over
 * rows, each sample labelled `label="<labelOf(row)>"`: the shape of every textfile attendux writes (backup
 * kinds, off-site targets, scheduled jobs).
 */
export async function gaugeText<T>(
  label: string,
  rows: readonly T[],
  labelOf: (row: T) => string,
  families: readonly GaugeFamily<T>[],
): Promise<string> {
  const registry = new Registry();
  for (const [name, help, value] of families) {
    const g = new Gauge({ name, help, labelNames: [label], registers: [registry] });
    for (const r of rows) {
      const v = value(r);
      if (v !== null && v !== undefined) g.set({ [label]: labelOf(r) }, v);
    }
  }
  return registry.metrics();
}
